"""The configuration store's commands: config versions, buckets, presets, db, plan --bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planforge.cli import app
from planforge.configstore import ConfigStore, default_actor
from planforge.portfolio.planner import preset_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "portfolio.json"
OBJECTIVE = "Rebalance my portfolio"

SHALLOW = """\
[planner]
max_depth = 1

[opportunity_calculators.profit_taking]
enabled = true

[pattern_generators.single_best]
enabled = true
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PLANFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLANFORGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


@pytest.fixture
def runner(home: Path) -> CliRunner:
    return CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "default": tmp_path / "default.toml",
        "conservative": tmp_path / "conservative.toml",
        "shallow": tmp_path / "shallow.toml",
    }
    out["default"].write_text(preset_text("default"))
    out["conservative"].write_text(preset_text("conservative"))
    out["shallow"].write_text(SHALLOW)
    return out


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


def _create(runner: CliRunner, name: str, path: Path, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = _json(
        runner, "config", "create", name, "--title", name.title(), "--file", str(path), *extra
    )
    return data


# -- config ---------------------------------------------------------------------------------


def test_create_history_and_show(runner: CliRunner, files: dict[str, Path], home: Path) -> None:
    first = _create(runner, "core", files["default"], "--description", "balanced")
    assert first["created"] is True
    assert first["config"]["version"] == 1
    assert first["config"]["created_by"] == default_actor()
    second = _create(runner, "core", files["conservative"], "--actor", "ana")
    assert second["config"]["version"] == 2
    assert second["config"]["created_by"] == "ana"
    same = _create(runner, "core", files["conservative"])
    assert same["created"] is False
    assert same["config"]["id"] == second["config"]["id"]
    assert (home / "planforge.db").is_file()

    history = _json(runner, "config", "history", "core")
    assert [item["version"] for item in history] == [1, 2]
    assert [item["active"] for item in history] == [False, True]
    table = _ok(runner, "config", "history", "core")
    assert "v1" in table
    assert "v2" in table

    shown = _json(runner, "config", "show", "core:1")
    assert shown["toml"] == preset_text("default")
    assert shown["description"] == "balanced"
    assert _json(runner, "config", "show", str(second["config"]["id"]))["version"] == 2
    assert _json(runner, "config", "show", "core")["version"] == 2  # a name: its active one
    text = _ok(runner, "config", "show", "core:1")
    assert "balanced" in text
    assert "[planner]" in text

    listed = _json(runner, "config", "list")
    assert [(item["name"], item["version"]) for item in listed] == [("core", 2)]


def test_create_rejects_bad_documents_and_stale_writers(
    runner: CliRunner, files: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[planner]\nmax_depth = 'deep'\n")
    line = _error(runner, "config", "create", "core", "--title", "Core", "--file", str(bad))
    assert "planner.max_depth" in line
    missing = _error(
        runner, "config", "create", "core", "--title", "Core", "--file", str(tmp_path / "nope")
    )
    assert "not found" in missing
    assert _error(runner, "config", "history", "core").startswith("error: No configuration")

    _create(runner, "core", files["default"])
    _create(runner, "core", files["conservative"], "--expected-version", "1")
    stale = _error(
        runner, "config", "create", "core", "--title", "Core", "--file", str(files["shallow"]),
        "--expected-version", "1",
    )  # fmt: skip
    assert "v2" in stale
    assert [item["version"] for item in _json(runner, "config", "history", "core")] == [1, 2]


def test_diff_text_and_semantic(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    _create(runner, "core", files["default"])
    _create(runner, "core", files["conservative"])
    text = _ok(runner, "config", "diff", "core:1", "core:2")
    assert text.startswith("--- core v1 (#1)\n+++ core v2 (#2)\n")
    assert "-max_depth = 5" in text
    assert "+max_depth = 3" in text

    semantic = _json(runner, "config", "diff", "core:1", "core:2", "--semantic")
    assert "opportunity_calculators.averaging_down" in semantic["modules_disabled"]
    assert {"key": "max_depth", "old": 5, "new": 3} in semantic["planner_changed"]
    people = _ok(runner, "config", "diff", "1", "2", "--semantic")
    assert "~ planner.max_depth: 5 -> 3" in people

    same_meaning = tmp_path / "commented.toml"
    same_meaning.write_text("# a comment\n" + preset_text("default"))
    assert "no difference in behaviour" in _ok(
        runner, "config", "diff", "core:1", str(same_meaning), "--semantic"
    )
    assert "+# a comment" in _ok(runner, "config", "diff", "core:1", str(same_meaning))
    assert "identical" in _ok(runner, "config", "diff", "1", "core:1")
    assert "version 9" in _error(runner, "config", "diff", "core:1", "core:9")


def test_export_import_and_clone(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    _create(runner, "core", files["conservative"], "--description", "line one\nline two")
    exported = tmp_path / "core.toml"
    assert "wrote" in _ok(runner, "config", "export", "core:1", "-o", str(exported))
    text = exported.read_text()
    assert text.startswith("# planforge-config\n# name: core\n# title: Core\n# version: 1\n")
    assert "# description: line one\n# description: line two\n" in text
    assert _ok(runner, "config", "export", "1").startswith("# planforge-config\n")

    again = _json(runner, "config", "import", str(exported))
    assert again["created"] is False
    assert "already has this content" in _ok(runner, "config", "import", str(exported))
    imported = _json(runner, "config", "import", str(exported), "--name", "sat", "--title", "Sat")
    assert imported["created"] is True
    original = _json(runner, "config", "show", "core:1")
    assert imported["config"]["digest"] == original["digest"]
    assert imported["config"]["description"] == "line one\nline two"

    plain = _error(runner, "config", "import", str(files["shallow"]))
    assert "--name" in plain
    assert "--title" in plain
    stored = _json(
        runner, "config", "import", str(files["shallow"]), "--name", "tiny", "--title", "Tiny"
    )
    assert stored["config"]["toml"] == SHALLOW

    clone = _json(runner, "config", "clone", "core:1", "--name", "exp", "--title", "Experiment")
    assert clone["config"]["name"] == "exp"
    assert clone["config"]["title"] == "Experiment"
    assert clone["config"]["digest"] == original["digest"]
    assert "No configuration" in _error(
        runner, "config", "clone", "999", "--name", "x", "--title", "X"
    )


# -- buckets --------------------------------------------------------------------------------


def test_assign_show_history_and_rollback(runner: CliRunner, files: dict[str, Path]) -> None:
    _create(runner, "core", files["default"])
    _create(runner, "core", files["conservative"])
    assert "No configuration" in _error(runner, "bucket", "assign", "core", "77")
    assert "has no configuration" in _error(runner, "bucket", "show", "core")

    first = _json(runner, "bucket", "assign", "core", "core:1", "--reason", "start")
    assert first["config_version"] == 1
    assert first["assigned_by"] == default_actor()
    _json(runner, "bucket", "assign", "core", "core:2", "--actor", "ana")
    shown = _json(runner, "bucket", "show", "core")
    assert shown["config"]["version"] == 2
    assert shown["assignment"]["assigned_by"] == "ana"

    rolled = _json(runner, "bucket", "rollback", "core", "core", "1", "--reason", "too tight")
    assert rolled["config_version"] == 1
    assert "too tight" in rolled["reason"]
    history = _json(runner, "bucket", "history", "core")
    assert [item["config_version"] for item in history] == [1, 2, 1]
    assert history[0]["reason"] == "start"
    table = _ok(runner, "bucket", "history", "core")
    assert "too tight" in table
    assert "core v2" in table
    assert "core v1" in _ok(runner, "bucket", "show", "core")
    assert [row["bucket"] for row in _json(runner, "bucket", "list")] == ["core"]
    assert "version 7" in _error(runner, "bucket", "rollback", "core", "core", "7")
    assert len(_json(runner, "bucket", "history", "core")) == 3


def test_plan_with_a_buckets_configuration(runner: CliRunner, files: dict[str, Path]) -> None:
    base = ["plan", OBJECTIVE, "--context", str(EXAMPLE), "--bucket", "core", "--json"]
    assert "has no configuration" in _error(runner, *base)
    _create(runner, "core", files["shallow"])
    _create(runner, "core", files["default"])
    _ok(runner, "bucket", "assign", "core", "core:1")
    shallow = _json(runner, *base[:-1])
    assert len(shallow["steps"]) == 1
    _ok(runner, "bucket", "assign", "core", "core:2")
    deeper = _json(runner, *base[:-1])
    assert len(deeper["steps"]) > 1
    both = _error(runner, *base, "--config", "default")
    assert "either --bucket or --config" in both


# -- presets and db -------------------------------------------------------------------------


def test_presets_list_show_create_rate(runner: CliRunner, files: dict[str, Path]) -> None:
    shipped = _json(runner, "preset", "list")
    assert [item["name"] for item in shipped] == ["aggressive", "conservative", "default"]
    assert "toml" not in shipped[0]
    shown = _json(runner, "preset", "show", "default")
    assert shown["toml"] == preset_text("default")
    assert _json(runner, "preset", "show", str(shown["id"]))["downloads"] == shown["downloads"] + 1

    created = _json(
        runner, "preset", "create", "mine", "--file", str(files["shallow"]), "--description",
        "One step", "--tag", "tiny", "--tag", "safe", "--author", "ana",
    )  # fmt: skip
    assert created["author"] == "ana"
    assert sorted(created["tags"]) == ["safe", "tiny"]
    assert [item["name"] for item in _json(runner, "preset", "list", "--tag", "tiny")] == ["mine"]

    rated = _json(runner, "preset", "rate", "mine", "4")
    assert rated["rating"] == 4.0
    assert rated["ratings"] == 1
    assert "from 2 rating(s)" in _ok(runner, "preset", "rate", "mine", "2")
    assert "rating" in _error(runner, "preset", "rate", "mine", "9")
    assert "No preset" in _error(runner, "preset", "show", "nope")

    bad = files["shallow"].with_name("bad.toml")
    bad.write_text("[nope]\n")
    assert "nope" in _error(
        runner, "preset", "create", "broken", "--file", str(bad), "--description", "x"
    )


def test_db_upgrade_creates_the_database(runner: CliRunner, home: Path) -> None:
    out = _ok(runner, "db", "upgrade")
    assert "up to date" in out
    assert str(home / "planforge.db") in out
    with ConfigStore(home=home) as store:
        assert len(store.list_presets()) == 3
    assert "up to date" in _ok(runner, "db", "upgrade")  # idempotent


# -- users ----------------------------------------------------------------------------------


def _token(runner: CliRunner, *args: str) -> str:
    """The token a command prints alone on its first stdout line."""
    lines = _ok(runner, *args).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _users(runner: CliRunner) -> dict[str, dict[str, Any]]:
    return {user["name"]: user for user in _json(runner, "user", "list")}


def test_user_revoke_rotate_and_list(runner: CliRunner, home: Path) -> None:
    first = _token(runner, "user", "create", "ops", "--role", "operator")
    listed = _users(runner)["ops"]
    assert (listed["status"], listed["revoked_at"], listed["last_used_at"]) == (
        "active",
        None,
        None,
    )
    out = _ok(runner, "user", "revoke", "ops", "--actor", "root")
    assert "'ops' is revoked" in out
    assert "planforge user rotate ops" in out
    with ConfigStore(home=home) as store:
        assert store.user_for_token(first) is None
        assert store.audit_log(limit=1)[0].actor == "root"
    revoked = _users(runner)["ops"]
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    assert "revoked" in _ok(runner, "user", "list")
    second = _token(runner, "user", "rotate", "ops")
    assert second.startswith("pf_")
    assert second != first
    with ConfigStore(home=home) as store:
        user = store.user_for_token(second)
        assert user is not None
        store.touch_user(user.id)
    used = _users(runner)["ops"]
    assert (used["status"], used["revoked_at"]) == ("active", None)
    assert used["last_used_at"] is not None
    table = _ok(runner, "user", "list")
    assert "never" not in table
    assert used["last_used_at"][:10] in table
    rotated = _json(runner, "user", "rotate", "ops")
    assert rotated["name"] == "ops"
    assert rotated["token"] not in (first, second)
    listing = _ok(runner, "user", "list", "--json")
    assert first not in listing
    assert rotated["token"] not in listing


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_user_commands_name_an_unknown_user(runner: CliRunner, command: str) -> None:
    _ok(runner, "user", "create", "ops")
    line = _error(runner, "user", command, "opz")
    assert "No API user named 'opz'" in line
    assert "planforge user list" in line
    assert [user["status"] for user in _users(runner).values()] == ["active"]


@pytest.mark.parametrize("name", ["op sp", "x:*", "n" * 150])
def test_user_create_refuses_a_name_the_runtime_would_refuse(
    runner: CliRunner, home: Path, name: str
) -> None:
    line = _error(runner, "user", "create", name, "--role", "operator")
    assert "1 to 128 characters" in line
    assert "for example 'alice.ops-1'" in line
    assert "Nothing was changed" in line
    assert not (home / "planforge.db").exists()  # refused before the database was opened
