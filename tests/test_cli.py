from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planforge.cli import app
from tests.factory.test_core import planner_source


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "cli_rebalancer.py").write_text(
        planner_source(
            "Rebalancer",
            "cli_rebalancer",
            capabilities=("rebalance", "portfolio"),
            keywords=("rebalance", "portfolio"),
            tier="vip",
            reliability=0.99,
            plan_body=(
                "return self.new_plan(objective, [PlanStep(id='1', action='sell', "
                "params={'cash': context.get('cash', 0)})])"
            ),
        )
    )
    (plugins / "cli_broken.py").write_text(
        planner_source("Broken", "cli_broken", module_prelude="raise RuntimeError('no config')")
    )
    monkeypatch.setenv("FACTORY_PLUGIN_DIRS", str(plugins))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_planners_list_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["planners", "list", "--json"])
    assert result.exit_code == 0, result.output
    names = [row["name"] for row in json.loads(result.stdout)]
    assert "cli_rebalancer" in names
    assert names == sorted(names)


def test_planners_list_table_and_describe(runner: CliRunner) -> None:
    result = runner.invoke(app, ["planners", "list"])
    assert result.exit_code == 0
    assert "cli_rebalancer" in result.stdout
    described = runner.invoke(app, ["planners", "describe", "cli_rebalancer", "--json"])
    assert json.loads(described.stdout)["tier"] == "vip"
    missing = runner.invoke(app, ["planners", "describe", "nope"])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: No planner named 'nope'")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_planners_show_unchecked_until_checked_and_check_reports_each(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def statuses() -> dict[str, str]:
        listed = runner.invoke(app, ["planners", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        return {row["name"]: row["status"] for row in json.loads(listed.stdout)}

    assert statuses()["cli_rebalancer"] == "unchecked"
    table = runner.invoke(app, ["planners", "list"])
    assert "unchecked" in table.stdout
    assert "run `planforge planners check`" in table.stdout
    assert "0 active, " in runner.invoke(app, ["health"]).stdout

    one = runner.invoke(app, ["planners", "check", "cli_rebalancer"])
    assert one.exit_code == 0, one.output
    assert one.stdout.startswith("cli_rebalancer: passed (self_test absent")
    assert statuses()["cli_rebalancer"] == "active"  # remembered for the next command

    every = runner.invoke(app, ["planners", "check", "--json"])
    assert every.exit_code == 1
    results = {row["name"]: row for row in json.loads(every.stdout)}
    assert results["cli_rebalancer"]["result"] == "passed"
    assert results["cli_broken"]["result"] == "quarantined"
    assert "RuntimeError: no config" in results["cli_broken"]["reason"]
    text = runner.invoke(app, ["planners", "check", "cli_broken"])
    assert text.exit_code == 1
    assert "cli_broken: quarantined: raised RuntimeError: no config" in text.stdout
    assert "planforge quarantine release NAME" in text.stdout

    unknown = runner.invoke(app, ["planners", "check", "cli_rebalancer", "nope"])
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: No planner named 'nope'")
    monkeypatch.setenv("FACTORY_SANDBOX", "0")
    off = runner.invoke(app, ["planners", "check"])
    assert off.exit_code == 1
    assert off.stderr.startswith("error: The sandbox is off (FACTORY_SANDBOX=0)")
    assert statuses()["cli_rebalancer"] == "active"


def test_select_explain_json(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["select", "Rebalance my portfolio", "--cap", "rebalance", "--explain", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["winner"] == "cli_rebalancer"
    assert data["scores"][0]["capability_match"] == 1.0
    plain = runner.invoke(app, ["select", "Rebalance my portfolio"])
    assert plain.stdout.strip() == "cli_rebalancer"


def test_select_with_nothing_selectable_fails_with_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_PLANNERS", "nothing_by_that_name")
    result = runner.invoke(app, ["select", "anything"])
    assert result.exit_code == 1
    assert "No planner can serve" in result.stderr


def test_plan_with_a_context_file(runner: CliRunner, tmp_path: Path) -> None:
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"cash": 250}))
    result = runner.invoke(
        app,
        [
            "plan",
            "Rebalance my portfolio",
            "--planner",
            "cli_rebalancer",
            "--context",
            str(context),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["steps"][0]["params"] == {"cash": 250}
    toml_context = tmp_path / "context.toml"
    toml_context.write_text("cash = 5\n")
    result = runner.invoke(
        app, ["plan", "x", "--planner", "cli_rebalancer", "--context", str(toml_context), "--json"]
    )
    assert json.loads(result.stdout)["steps"][0]["params"] == {"cash": 5}


def test_plan_rejects_a_bad_context_file(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["plan", "x", "--context", str(bad)])
    assert result.exit_code == 1
    assert "is not valid JSON" in result.stderr
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    result = runner.invoke(app, ["plan", "x", "--context", str(listing)])
    assert "JSON object" in result.stderr


def test_broken_plugin_is_quarantined_then_released(runner: CliRunner) -> None:
    result = runner.invoke(app, ["plan", "x", "--planner", "cli_broken"])
    assert result.exit_code == 1
    assert "RuntimeError" in result.stderr
    listed = runner.invoke(app, ["quarantine", "list", "--json"])
    assert [entry["planner_name"] for entry in json.loads(listed.stdout)] == ["cli_broken"]
    released = runner.invoke(app, ["quarantine", "release", "cli_broken"])
    assert released.exit_code == 0
    assert runner.invoke(app, ["quarantine", "list"]).stdout.strip() == "no planner is quarantined"
    again = runner.invoke(app, ["quarantine", "release", "cli_broken"])
    assert again.exit_code == 1


def test_health_exit_codes(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    ready = runner.invoke(app, ["health", "--json"])
    assert ready.exit_code == 0
    assert json.loads(ready.stdout)["ready"] is True
    monkeypatch.setenv("ALLOWED_PLANNERS", "nothing_by_that_name")
    not_ready = runner.invoke(app, ["health"])
    assert not_ready.exit_code == 1
    assert not_ready.stdout.startswith("NOT READY")


def test_diagnostics_to_a_file(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "diag.json"
    result = runner.invoke(app, ["diagnostics", "--output", str(target)])
    assert result.exit_code == 0
    assert "cli_rebalancer" in json.loads(target.read_text())["records"]
    text = runner.invoke(app, ["diagnostics"])
    assert "planforge diagnostics" in text.stdout


def test_malformed_setting_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_MIN_RELIABILITY", "lots")
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: FACTORY_MIN_RELIABILITY='lots' is not valid")


def test_help_does_not_import_heavy_libraries() -> None:
    script = (
        "import sys\n"
        "from planforge.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('pydantic', 'planforge.factory._core', 'numpy')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "planners" in result.stdout


def test_console_script_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "planforge.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("planforge ")
