"""API users in the store: tokens shown once and stored as hashes, revoked (the user kept) or
rotated, last use recorded at most once a minute, names that the runtime accepts as ids, and
a schema upgrade that keeps the users of an older database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text, update
from typer.testing import CliRunner

from planforge.cli import app
from planforge.configstore import ConfigStore, InvalidInput
from planforge.configstore._db import create_store_engine
from planforge.configstore._models import ApiUserRow
from planforge.configstore._store import SCRIPT_LOCATION, token_digest
from planforge.configstore.errors import UserExists, UserNotFound
from planforge.runtime._context import (
    MAX_ID_LENGTH,
    InvalidContextError,
    UserExecutionContext,
    check_id,
)


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


# -- revocation and rotation --------------------------------------------------------------


def audit_actions(store: ConfigStore) -> list[str]:
    return [entry.action for entry in store.audit_log()]


def test_revoking_keeps_the_user_and_refuses_its_token(store: ConfigStore) -> None:
    user, token = store.create_user("ann", "operator")
    epoch = store.auth_epoch()
    revoked = store.revoke_user("ann", actor="root")
    assert revoked.revoked_at is not None
    assert revoked.status == "revoked"
    assert store.user_for_token(token) is None
    assert store.list_users() == [revoked]
    assert store.auth_epoch() == epoch + 1
    entry = store.audit_log(limit=1)[0]
    assert (entry.action, entry.actor, entry.entity_id) == ("user.revoke", "root", str(user.id))
    # again: nothing changes, nothing is recorded
    assert store.revoke_user("ann") == revoked
    assert store.auth_epoch() == epoch + 1
    assert audit_actions(store).count("user.revoke") == 1


def test_rotating_replaces_the_token_and_re_enables_a_revoked_user(store: ConfigStore) -> None:
    _, first = store.create_user("ann", "operator")
    rotated, second = store.rotate_user("ann")
    assert second != first
    assert store.user_for_token(first) is None
    assert store.user_for_token(second) == rotated
    store.revoke_user("ann")
    epoch = store.auth_epoch()
    again, third = store.rotate_user("ann", actor="root")
    assert again.status == "active"
    assert store.user_for_token(second) is None
    found = store.user_for_token(third)
    assert found is not None
    assert (found.name, found.role, found.revoked_at) == ("ann", "operator", None)
    assert store.auth_epoch() == epoch + 1
    entry = store.audit_log(limit=1)[0]
    assert (entry.action, entry.actor) == ("user.rotate", "root")
    assert entry.detail == {"name": "ann", "reenabled": True}


def test_an_unknown_user_is_a_clear_error_and_changes_nothing(store: ConfigStore) -> None:
    store.create_user("ann", "viewer")
    epoch, actions = store.auth_epoch(), audit_actions(store)
    with pytest.raises(UserNotFound, match=r"No API user named 'bob'.*planforge user list"):
        store.revoke_user("bob")
    with pytest.raises(UserNotFound, match="bob"):
        store.rotate_user("bob")
    assert (store.auth_epoch(), audit_actions(store)) == (epoch, actions)


def test_last_use_is_recorded_at_most_once_a_minute(store: ConfigStore) -> None:
    user, _ = store.create_user("ann", "viewer")
    assert store.touch_user(user.id) is True
    first = store.list_users()[0].last_used_at
    assert first is not None
    assert store.touch_user(user.id) is False
    assert store.list_users()[0].last_used_at == first
    with store.engine.begin() as connection:  # as if the last use were two minutes ago
        connection.execute(
            update(ApiUserRow).values(last_used_at=first - timedelta(seconds=2 * 60))
        )
    assert store.touch_user(user.id) is True
    later = store.list_users()[0].last_used_at
    assert later is not None
    assert later >= first


# -- names follow the runtime's id rule ---------------------------------------------------

REFUSED_NAMES = {"a space": "op sp", "a star": "x:*", "150 characters": "n" * 150}


@pytest.mark.parametrize("name", REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
def test_a_name_the_runtime_would_refuse_is_refused_and_nothing_is_written(
    store: ConfigStore, name: str
) -> None:
    with pytest.raises(InvalidContextError):
        check_id("user_id", name)  # the runtime's verdict on the same name
    actions = audit_actions(store)
    with pytest.raises(InvalidInput) as refused:
        store.create_user(name, "operator")
    message = refused.value.message
    assert f"1 to {MAX_ID_LENGTH} characters" in message
    assert "_ . : @ -" in message
    assert "for example 'alice.ops-1'" in message
    assert store.list_users() == []
    assert audit_actions(store) == actions


def test_a_name_the_runtime_accepts_can_run(store: ConfigStore) -> None:
    user, _ = store.create_user("alice.ops-1@eu:2", "operator")
    context = UserExecutionContext.create(user.name)
    assert context.user_id == "alice.ops-1@eu:2"
    with pytest.raises(InvalidInput, match="128"):
        store.create_user("n" * (MAX_ID_LENGTH + 1), "viewer")
    assert [found.name for found in store.list_users()] == ["alice.ops-1@eu:2"]


# -- schema upgrade -----------------------------------------------------------------------


def schema_at_0002_with_a_user(url: str) -> str:
    """A database as planforge with revision 0002 left it: one user, whose token is returned."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    engine = create_store_engine(url)
    token = "pf_written-by-an-older-planforge"
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
            connection.execute(
                text(
                    "INSERT INTO api_users (name, role, token_hash, created_at) "
                    "VALUES ('old-timer', 'admin', :hash, :at)"
                ),
                {"hash": token_digest(token), "at": datetime(2026, 1, 2, tzinfo=UTC)},
            )
    finally:
        engine.dispose()
    return token


@pytest.mark.parametrize("how", ["first use", "planforge db upgrade"])
def test_a_0002_database_upgrades_with_its_users_intact(
    store_url: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = schema_at_0002_with_a_user(store_url)
    if how == "planforge db upgrade":
        monkeypatch.setenv("PLANFORGE_DATABASE_URL", store_url)
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
    with ConfigStore(store_url) as store:
        user = store.user_for_token(token)
        assert user is not None
        assert (user.name, user.role, user.status, user.last_used_at) == (
            "old-timer",
            "admin",
            "active",
            None,
        )
        assert store.auth_epoch() == 0
        with store.engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0005"
        store.revoke_user("old-timer")
        assert store.user_for_token(token) is None
        assert store.auth_epoch() == 1
