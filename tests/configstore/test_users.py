"""API users in the store and `planforge user create`: tokens shown once, stored as hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from planforge.cli import app
from planforge.configstore import ConfigStore, InvalidInput
from planforge.configstore.errors import UserExists
from planforge.configstore.store import token_digest


def test_create_user_returns_a_token_that_finds_it(store: ConfigStore) -> None:
    user, token = store.create_user("ann", "operator")
    assert (user.name, user.role) == ("ann", "operator")
    assert store.user_for_token(token) == user
    assert store.user_for_token(token + "x") is None
    assert store.user_for_token("") is None


def test_only_the_hash_is_stored(store: ConfigStore) -> None:
    _, token = store.create_user("ann", "viewer")
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM api_users")).scalars().all()
    assert stored == [token_digest(token)]
    assert token not in stored


def test_names_are_unique_and_roles_checked(store: ConfigStore) -> None:
    store.create_user("ann", "viewer")
    with pytest.raises(UserExists, match="already exists"):
        store.create_user("ann", "admin")
    with pytest.raises(InvalidInput, match="viewer, operator, admin"):
        store.create_user("bob", "root")
    with pytest.raises(InvalidInput):
        store.create_user(" bob", "viewer")
    assert [user.name for user in store.list_users()] == ["ann"]


def test_list_users_by_name_and_creation_is_audited(store: ConfigStore) -> None:
    store.create_user("zed", "admin")
    store.create_user("amy", "viewer")
    assert [(user.name, user.role) for user in store.list_users()] == [
        ("amy", "viewer"),
        ("zed", "admin"),
    ]
    actions = [entry.action for entry in store.audit_log()]
    assert actions.count("user.create") == 2


def test_cli_user_create_prints_the_token_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("PLANFORGE_DATABASE_URL", url)
    runner = CliRunner()
    result = runner.invoke(app, ["user", "create", "ops", "--role", "operator"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[0]
    with ConfigStore(url) as store:
        found = store.user_for_token(token)
    assert found is not None
    assert found.role == "operator"
    listed = runner.invoke(app, ["user", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert token not in listed.stdout
    assert [item["name"] for item in json.loads(listed.stdout)] == ["ops"]
    twice = runner.invoke(app, ["user", "create", "ops"])
    assert twice.exit_code == 1
    assert "already exists" in twice.output
    bad_role = runner.invoke(app, ["user", "create", "eve", "--role", "root"])
    assert bad_role.exit_code == 1
