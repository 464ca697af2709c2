"""API users' transactions: `users.py` holds their rules and SQL, this room opens the
transaction each change runs in (with its audit row and auth epoch move)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from planforge.configstore import _users as users
from planforge.configstore._inputs import check_text
from planforge.configstore._models import NAME_LENGTH
from planforge.configstore._records import User
from planforge.configstore.errors import StoreError, UserExists

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions

__all__ = ["Accounts"]


class Accounts:
    """Creates, revokes and rotates API users; looks tokens up; records their use."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def create(self, name: str, role: str, created_by: str) -> tuple[User, str]:
        """See `ConfigStore.create_user`."""
        users.check_new_user(name, role)
        check_text("created_by", created_by, NAME_LENGTH)
        try:
            with self._sessions.writing("create an API user") as connection:
                return users.create(connection, name, role, created_by)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race for the name
                raise UserExists(name) from exc
            raise

    def revoke(self, name: str, actor: str) -> User:
        check_text("actor", actor, NAME_LENGTH)
        with self._sessions.writing("revoke an API user") as connection:
            return users.revoke(connection, name, actor)

    def rotate(self, name: str, actor: str) -> tuple[User, str]:
        check_text("actor", actor, NAME_LENGTH)
        with self._sessions.writing("rotate an API user's token") as connection:
            return users.rotate(connection, name, actor)

    def for_token(self, token: str) -> User | None:
        if not isinstance(token, str) or not token:
            return None
        with self._sessions.reading("look up an API token") as connection:
            return users.user_for_token(connection, token)

    def touch(self, user_ids: Sequence[int]) -> int:
        with self._sessions.writing("record API users' last use") as connection:
            return users.touch(connection, user_ids)

    def epoch(self) -> int:
        with self._sessions.reading("read the auth epoch") as connection:
            return users.read_epoch(connection)

    def everyone(self) -> list[User]:
        with self._sessions.reading("list API users") as connection:
            return users.list_users(connection)
