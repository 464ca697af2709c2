"""API users: the name rule, tokens kept as hashes, revocation, rotation, last use, auth epoch.

The functions take the caller's connection, so `ConfigStore` decides the transaction; each
change writes its audit row in it. Revoking or rotating a token bumps the auth epoch in the same
transaction: servers that cache token lookups watch that one row to know when to forget them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from planforge.configstore._audit import write_audit
from planforge.configstore._models import ApiUserRow, AuthEpochRow
from planforge.configstore._records import User
from planforge.configstore.errors import InvalidInput, UserExists, UserNotFound
from planforge.ids import ID_EXAMPLE, ID_RULE, id_problem

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "TOUCH_INTERVAL_S",
    "bump_epoch",
    "check_new_user",
    "check_role",
    "check_user_name",
    "create",
    "list_users",
    "new_token",
    "read_epoch",
    "revoke",
    "rotate",
    "token_digest",
    "touch",
    "user_for_token",
]

# Least to most privileged: a role may do everything the roles before it may.
ROLES: Final = ("viewer", "operator", "admin")
TOKEN_PREFIX: Final = "pf_"
#: A user's last use is written at most this often; the time shown is that approximate.
TOUCH_INTERVAL_S: Final = 60.0
_EPOCH_ROW: Final = 1

U = ApiUserRow
E = AuthEpochRow

_USER_COLUMNS = (U.id, U.name, U.role, U.created_at, U.revoked_at, U.last_used_at)
_BY_HASH = select(*_USER_COLUMNS).where(
    U.token_hash == bindparam("token_hash"), U.revoked_at.is_(None)
)
_BY_NAME_FOR_UPDATE = select(*_USER_COLUMNS).where(U.name == bindparam("name")).with_for_update()
_READ_EPOCH = select(E.epoch).where(E.id == _EPOCH_ROW)
_BUMP_EPOCH = update(E).where(E.id == _EPOCH_ROW).values(epoch=E.epoch + 1)


def token_digest(token: str) -> str:
    """sha256 of an API token, hex: the only form in which tokens reach the database."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: the prefix and 43 URL-safe characters (usable in a WebSocket
    subprotocol, a header and a query string alike)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_user_name(name: object) -> str:
    """A user name must be a valid runtime id: it becomes the `user_id` of each of its runs."""
    problem = id_problem(name)
    if problem is None and isinstance(name, str):
        return name
    raise InvalidInput(
        "name",
        name,
        f"{problem}; a user name becomes the id of its runs, so it follows the runtime's id "
        f"rule: {ID_RULE} (for example {ID_EXAMPLE!r})",
    )


def check_role(role: object) -> str:
    if isinstance(role, str) and role in ROLES:
        return role
    raise InvalidInput("role", role, f"give one of {', '.join(ROLES)}")


def check_new_user(name: object, role: object) -> None:
    """Raise `InvalidInput` for a name or role `create` would refuse; reads nothing."""
    check_user_name(name)
    check_role(role)


def create(connection: Connection, name: str, role: str, actor: str) -> tuple[User, str]:
    """A new user (name and role already checked) and its token, audited."""
    if connection.execute(select(U.id).where(U.name == name)).first() is not None:
        raise UserExists(name)
    token = new_token()
    now = datetime.now(UTC)
    user_id = connection.execute(
        insert(U)
        .values(name=name, role=role, token_hash=token_digest(token), created_at=now)
        .returning(U.id)
    ).scalar_one()
    write_audit(connection, actor, "user.create", "user", user_id, {"name": name, "role": role})
    return User(id=user_id, name=name, role=role, created_at=now), token


def _user(row: Any) -> User:
    # rows of _USER_COLUMNS, whose order is User's field order
    return User(*row)


def user_for_token(connection: Connection, token: str) -> User | None:
    """The active user holding `token`: one lookup on the unique index of the hashes."""
    row = connection.execute(_BY_HASH, {"token_hash": token_digest(token)}).first()
    return _user(row) if row is not None else None


def list_users(connection: Connection) -> list[User]:
    return [_user(row) for row in connection.execute(select(*_USER_COLUMNS).order_by(U.name))]


def _lock(connection: Connection, name: str) -> User:
    """The user named `name`, its row locked until the transaction ends (PostgreSQL; SQLite's
    write transaction already holds the whole database)."""
    row = connection.execute(_BY_NAME_FOR_UPDATE, {"name": name}).first()
    if row is None:
        raise UserNotFound(name)
    return _user(row)


def revoke(connection: Connection, name: str, actor: str) -> User:
    """Refuse the user's token from now on; the row stays for the audit trail. Revoking a
    revoked user changes nothing (no audit row, no epoch move)."""
    user = _lock(connection, name)
    if user.revoked_at is not None:
        return user
    now = datetime.now(UTC)
    connection.execute(update(U).where(U.id == user.id).values(revoked_at=now))
    bump_epoch(connection)
    write_audit(connection, actor, "user.revoke", "user", user.id, {"name": name})
    return replace(user, revoked_at=now)


def rotate(connection: Connection, name: str, actor: str) -> tuple[User, str]:
    """Replace the user's token (the old one stops working) and re-enable a revoked user."""
    user = _lock(connection, name)
    token = new_token()
    connection.execute(
        update(U).where(U.id == user.id).values(token_hash=token_digest(token), revoked_at=None)
    )
    bump_epoch(connection)
    detail = {"name": name, "reenabled": user.revoked_at is not None}
    write_audit(connection, actor, "user.rotate", "user", user.id, detail)
    return replace(user, revoked_at=None), token


def touch(connection: Connection, user_ids: Sequence[int]) -> int:
    """Record a use now for each user, unless one within `TOUCH_INTERVAL_S` is recorded
    already; one statement for the whole batch. The number of users updated."""
    if not user_ids:
        return 0
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=TOUCH_INTERVAL_S)
    result = connection.execute(
        update(U)
        .where(
            U.id.in_(sorted(set(user_ids))),
            or_(U.last_used_at.is_(None), U.last_used_at < cutoff),
        )
        .values(last_used_at=now)
    )
    return int(result.rowcount)


def read_epoch(connection: Connection) -> int:
    return int(connection.execute(_READ_EPOCH).scalar() or 0)


def bump_epoch(connection: Connection) -> None:
    """Move the auth epoch on, creating its row if it is missing."""
    if not connection.execute(_BUMP_EPOCH).rowcount:
        connection.execute(insert(E).values(id=_EPOCH_ROW, epoch=1))
