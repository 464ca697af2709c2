"""`planforge plan --explain` and `planforge config dry-run --explain`: why this plan, printed
after the plan and carried in the JSON, on the example portfolio and the shipped modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planforge.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "portfolio.json"
OBJECTIVE = "Rebalance my portfolio"

#: One buying calculator and one step at most: with no cash, every candidate is refused.
BUYS_ONLY = """
[planner]
max_depth = 1

[opportunity_calculators.opportunity_buys]
enabled = true

[sequence_generators.combinatorial]
enabled = true
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "220")
    return CliRunner()


@pytest.fixture
def no_cash(tmp_path: Path) -> tuple[Path, Path]:
    """The example portfolio without cash, and a configuration that only buys."""
    context = json.loads(EXAMPLE.read_text())
    context["cash"] = 0.0
    portfolio = tmp_path / "no-cash.json"
    portfolio.write_text(json.dumps(context))
    config = tmp_path / "buys.toml"
    config.write_text(BUYS_ONLY)
    return portfolio, config


def invoke(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def plan_json(runner: CliRunner, *args: str) -> Any:
    return json.loads(invoke(runner, "plan", OBJECTIVE, *args, "--json"))


def test_plan_explain_prints_candidates_and_stages_after_the_plan(runner: CliRunner) -> None:
    out = invoke(runner, "plan", OBJECTIVE, "--context", str(EXAMPLE), "--explain")
    plan_at = out.index("score: ")
    candidates_at = out.index("Candidates each opportunity calculator proposed")
    stages_at = out.index("Sequences at each stage")
    assert plan_at < candidates_at < stages_at  # after the plan, in pipeline order
    for calculator in ("profit_taking", "opportunity_buys", "rebalance_sells"):
        assert calculator in out
    for stage in ("pattern", "sequence generator", "filter", "feasibility", "evaluation"):
        assert stage in out
    assert "candidates for sequence generators:" in out
    assert "Closest blocked plan" not in out  # the plan has steps


def test_plan_explain_json_carries_the_explanation(runner: CliRunner) -> None:
    plain = plan_json(runner, "--context", str(EXAMPLE))
    assert "explanation" not in plain
    plan = plan_json(runner, "--context", str(EXAMPLE), "--explain")
    explanation = plan["explanation"]
    assert plan["steps"] == plain["steps"]  # explaining changes nothing of the plan
    assert explanation["plan_steps"] == len(plan["steps"])
    assert explanation["sequences"] == sum(g["new"] for g in explanation["generators"])
    evaluation = explanation["evaluation"]
    assert evaluation["evaluated"] == explanation["feasibility"]["kept"]
    first = explanation["calculators"][0]
    assert set(first) == {"module", "returned", "from_cache", "failed", "candidates"}
    assert set(first["candidates"][0]) == {
        "side",
        "symbol",
        "quantity",
        "value",
        "priority",
        "reason",
    }


def test_an_empty_plan_shows_the_closest_blocked_plan_and_the_cash_rule(
    runner: CliRunner, no_cash: tuple[Path, Path]
) -> None:
    portfolio, config = no_cash
    args = ("--context", str(portfolio), "--config", str(config))
    out = invoke(runner, "plan", OBJECTIVE, *args, "--explain")
    assert "no steps" in out
    assert "Closest blocked plan" in out
    assert "stopped by: step 1 (buy " in out
    assert "cash 0.00 EUR cannot cover" in out
    assert "score if allowed" in out
    data = plan_json(runner, *args, "--explain")["explanation"]
    closest = data["blocked"][0]
    assert closest["steps"][0]["side"] == "buy"
    assert closest["steps"][0]["symbol"] in out
    assert data["blocked_scored"] == data["evaluation"]["infeasible"] > 0


def test_dry_run_explain_shows_limits_or_explains_a_given_context(runner: CliRunner) -> None:
    out = invoke(runner, "config", "dry-run", "default", "--explain")
    assert "stage limits" in out
    assert "max_candidates = 24" in out
    assert "Candidates each opportunity calculator proposed" not in out
    explained = invoke(
        runner, "config", "dry-run", "default", "--explain", "--context", str(EXAMPLE)
    )
    assert "explained plan:" in explained
    assert "Sequences at each stage" in explained
    data = json.loads(
        invoke(
            runner,
            "config",
            "dry-run",
            "default",
            "--explain",
            "--context",
            str(EXAMPLE),
            "--json",
        )
    )
    assert data["valid"] is True
    assert data["limits"]["max_depth"] == 5
    assert data["explanation"]["calculators"]
    without = json.loads(invoke(runner, "config", "dry-run", "default", "--json"))
    assert "explanation" not in without
    assert "limits" not in without


def test_dry_run_context_needs_explain(runner: CliRunner) -> None:
    result = runner.invoke(app, ["config", "dry-run", "default", "--context", str(EXAMPLE)])
    assert result.exit_code == 1
    assert "--context is read only with --explain" in result.stderr
