"""`planforge runs ...` on recorded runs: list with filters, show, cancel, prune, and the one
line of error every bad input gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from planforge.cli import app
from planforge.cli._runs import parse_since
from planforge.configstore import CANCELLED, ConfigStore
from planforge.portfolio.planner import preset_text

PLAN = {
    "plan_id": "p-1",
    "score": 0.75,
    "steps": [
        {"id": "s1", "action": "sell", "description": "Sell 3 ACME"},
        {"id": "s2", "action": "buy", "description": "Buy 2 INIT"},
    ],
}


@pytest.fixture
def runner(store_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PLANFORGE_DATABASE_URL", store_url)
    monkeypatch.setenv("COLUMNS", "250")
    for name in ("MAX_AGE_DAYS", "MAX_PER_USER", "MAX_TOTAL", "MAX_CONTEXT_BYTES"):
        monkeypatch.delenv(f"PLANFORGE_RUNS_{name}", raising=False)
    return CliRunner()


@pytest.fixture
def recorded(store_url: str) -> dict[str, Any]:
    """Three runs: ann's completed one on bucket core, ann's failed one, bob's queued one."""
    with ConfigStore(store_url) as store:
        config = store.create_new_version("core", "Core", preset_text("default")).config
        runs = store.runs
        runs.create(
            run_id="run-done",
            user="ann",
            objective="Rebalance",
            context={"cash": 5},
            bucket="core",
            context_kind="portfolio",
        )
        runs.claim("run-done", "replica-a", 60)
        runs.record_planner(
            "run-done",
            planner="holistic",
            planner_version="1.2",
            config_id=config.id,
            config_version=config.version,
            config_digest=config.digest,
        )
        runs.complete("run-done", "replica-a", PLAN)
        runs.create(run_id="run-failed", user="ann", objective="Grow", context={})
        runs.claim("run-failed", "replica-a", 60)
        runs.fail("run-failed", "replica-a", {"error": "PlannerTimeout", "message": "too slow"})
        runs.create(run_id="run-queued", user="bob", objective="Hedge", context={})
    return {"config_id": config.id}


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _json(runner: CliRunner, *args: str) -> Any:
    return json.loads(_ok(runner, *args, "--json"))


def _error(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _ids(runner: CliRunner, *args: str) -> list[str]:
    return [run["run_id"] for run in _json(runner, "runs", "list", *args)]


def test_list_shows_runs_newest_first_and_filters(
    runner: CliRunner, recorded: dict[str, Any]
) -> None:
    assert _ids(runner) == ["run-queued", "run-failed", "run-done"]
    assert _ids(runner, "--user", "ann") == ["run-failed", "run-done"]
    assert _ids(runner, "--status", "queued") == ["run-queued"]
    assert _ids(runner, "--bucket", "core") == ["run-done"]
    assert _ids(runner, "--limit", "1") == ["run-queued"]
    assert _ids(runner, "--since", "1h") == ["run-queued", "run-failed", "run-done"]
    assert _ids(runner, "--since", "2999-01-01") == []
    listed = _json(runner, "runs", "list", "--bucket", "core")[0]
    assert "plan" not in listed
    assert (listed["status"], listed["config_id"]) == ("completed", recorded["config_id"])
    table = _ok(runner, "runs", "list")
    assert "3 run(s), newest first" in table
    assert f"core (#{recorded['config_id']} v1)" in table
    assert "holistic 1.2" in table


def test_show_gives_the_plan_error_and_configuration(
    runner: CliRunner, recorded: dict[str, Any]
) -> None:
    shown = _json(runner, "runs", "show", "run-done")
    assert shown["run"]["plan"] == PLAN
    assert "context" not in shown["run"]
    assert shown["config"]["name"] == "core"
    assert (shown["config"]["version"], shown["config"]["digest_matches"]) == (1, True)
    text = _ok(runner, "runs", "show", "run-done")
    assert "plan p-1: 2 step(s), score 0.75" in text
    assert "Sell 3 ACME" in text
    assert f"core v1 (id {recorded['config_id']})" in text
    failed = _ok(runner, "runs", "show", "run-failed")
    assert "error: PlannerTimeout: too slow" in failed
    with_context = _json(runner, "runs", "show", "run-done", "--context")
    assert with_context["run"]["context"] == {"cash": 5}
    assert '"cash": 5' in _ok(runner, "runs", "show", "run-done", "--context")


def test_cancel_as_admin_or_as_a_user(
    runner: CliRunner, recorded: dict[str, Any], store_url: str
) -> None:
    assert "No run 'run-queued'" in _error(
        runner, "runs", "cancel", "run-queued", "--as-user", "ann"
    )
    assert "cancelled; it had not started" in _ok(runner, "runs", "cancel", "run-queued")
    with ConfigStore(store_url) as store:
        run = store.runs.get("run-queued")
    assert run is not None
    assert run.status == CANCELLED
    assert "already ended (completed)" in _error(runner, "runs", "cancel", "run-done")
    assert "already ended (cancelled)" in _error(
        runner, "runs", "cancel", "run-queued", "--as-user", "bob"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("runs", "list", "--since", "last tuesday"), "--since 'last tuesday' is not a date"),
        (("runs", "list", "--status", "done"), "--status 'done' is not a run status"),
        (("runs", "show", "nope"), "No run 'nope'"),
        (("runs", "cancel", "nope"), "No run 'nope'"),
    ],
)
def test_bad_input_fails_with_one_line(
    runner: CliRunner, recorded: dict[str, Any], args: tuple[str, ...], expected: str
) -> None:
    assert expected in _error(runner, *args)


def test_prune_keeps_the_newest_finished_runs(
    runner: CliRunner, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANFORGE_RUNS_MAX_TOTAL", "1")
    assert _ok(runner, "runs", "prune").strip() == "pruned 1 finished run(s)"
    assert _ids(runner) == ["run-queued", "run-failed"]
    monkeypatch.setenv("PLANFORGE_RUNS_MAX_TOTAL", "none")
    assert "PLANFORGE_RUNS_MAX_TOTAL='none' is not valid" in _error(runner, "runs", "prune")


def test_since_takes_dates_times_and_ages() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    offset = parse_since("2026-12-01T09:30+02:00")
    assert offset == datetime(2026, 12, 1, 7, 30, tzinfo=UTC)


def test_show_explain_prints_the_explanation_recorded_with_the_plan(
    runner: CliRunner, recorded: dict[str, Any], store_url: str
) -> None:
    from pathlib import Path

    from planforge.portfolio import HolisticPortfolioPlanner

    example = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"
    context = json.loads(example.read_text())
    plan = HolisticPortfolioPlanner().run("Rebalance", context, explain=True).plan
    with ConfigStore(store_url) as store:
        store.runs.create(run_id="run-explained", user="ann", objective="Rebalance", context={})
        store.runs.claim("run-explained", "replica-a", 60)
        store.runs.complete("run-explained", "replica-a", plan.model_dump(mode="json"))
    text = _ok(runner, "runs", "show", "run-explained", "--explain")
    assert "Sequences at each stage" in text
    assert "optimal_sizing" in text
    assert "no explanation" in _ok(runner, "runs", "show", "run-done", "--explain")
    assert "the run has no plan" in _ok(runner, "runs", "show", "run-queued", "--explain")
