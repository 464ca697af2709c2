"""The configuration store: versioned planner configurations, bucket history, presets,
API users and the audit trail, behind one face.

`ConfigStore` holds no logic of its own: each idea is a room that owns the session factory
and opens its own transactions (`_versions`, `_buckets`, `_presets`, `_accounts` over
`users`, `audit`, `_schema`), and the store hands each call to its room. Every public method
runs in its own short transaction; every change writes its audit row in that transaction,
and subscribers (`_subscribers`) hear of it only after the commit. `_sessions` says how
writers are serialised on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from planforge.configstore._accounts import Accounts
from planforge.configstore._audit import AuditLog
from planforge.configstore._bucket_contexts import BucketContexts
from planforge.configstore._buckets import Buckets
from planforge.configstore._inputs import MAX_DOCUMENT_BYTES
from planforge.configstore._presets import Presets, seed_presets
from planforge.configstore._records import (
    AuditEntry,
    BucketAssignment,
    ConfigVersion,
    CreateResult,
    Preset,
    User,
)
from planforge.configstore._run_settings import ENV_MAX_CONTEXT_BYTES
from planforge.configstore._runs import RunStore
from planforge.configstore._schema import SCRIPT_LOCATION, count_rows, upgrade_schema
from planforge.configstore._sessions import Sessions
from planforge.configstore._subscribers import Subscriber, Subscribers
from planforge.configstore._users import ROLES, token_digest
from planforge.configstore._validator import DocumentValidator, content_digest
from planforge.configstore._versions import Versions

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ROLES",
    "SCRIPT_LOCATION",
    "ConfigStore",
    "Subscriber",
    "content_digest",
    "token_digest",
]


def _prepare(sessions: Sessions) -> None:
    upgrade_schema(sessions, seed_presets)


class ConfigStore:
    """Versioned planner configurations, bucket assignments, presets and their audit trail."""

    max_document_bytes: int = MAX_DOCUMENT_BYTES

    def __init__(
        self, url: str | None = None, *, home: Path | None = None, echo: bool = False
    ) -> None:
        self._sessions = Sessions(url, home=home, echo=echo, prepare=_prepare)
        self.url: URL = self._sessions.url
        subscribers = Subscribers()
        validator = DocumentValidator(self.max_document_bytes)
        self._subscribers = subscribers
        self._versions = Versions(self._sessions, validator, subscribers)
        self._buckets = Buckets(self._sessions, subscribers)
        self._presets = Presets(self._sessions, validator)
        self._accounts = Accounts(self._sessions)
        self._audit_log = AuditLog(self._sessions)

    @classmethod
    def from_environment(cls) -> ConfigStore:
        """The store named by PLANFORGE_DATABASE_URL, else the SQLite file in PLANFORGE_HOME."""
        return cls()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and benchmarks; use the methods to write)."""
        return self._sessions.engine

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`: what messages may say about the database."""
        return self._sessions.backend

    def __repr__(self) -> str:
        return f"ConfigStore(backend={self.backend!r})"  # a URL may carry a password

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the pooled connections; the store cannot be used afterwards."""
        self._sessions.close()

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision and seed the shipped presets.

        Idempotent, and safe when several processes start at once: the upgrade runs in one
        write transaction under the migration lock (see `db.lock_for_migration`).
        """
        self._sessions.prepare()

    @cached_property
    def runs(self) -> RunStore:
        """Plan runs, shared by every replica (see `RunStore`); its settings are read from
        the environment on first use."""
        return RunStore(self)

    # -- configurations ---------------------------------------------------------------------

    def create_new_version(
        self,
        name: str,
        title: str,
        config_toml: str,
        description: str | None = None,
        created_by: str = "cli",
        expected_version: int | None = None,
    ) -> CreateResult:
        """Validate, then store the next version of `name` and make it the active one.

        `expected_version` is compare-and-swap (0: expect no version yet). Content equal to
        the active version's is reported with `created=False` and not stored again.
        """
        return self._versions.create(
            name, title, config_toml, description, created_by, expected_version
        )

    def get_config_by_id(self, config_id: int) -> ConfigVersion:
        return self._versions.by_id(config_id)

    def get_version(self, name: str, version: int) -> ConfigVersion:
        return self._versions.version(name, version)

    def get_active(self, name: str) -> ConfigVersion:
        return self._versions.active(name)

    def get_version_history(self, name: str) -> list[ConfigVersion]:
        """Every version of `name`, oldest first (empty when the name is unknown)."""
        return self._versions.history(name)

    def list_configs(self) -> list[ConfigVersion]:
        """The active version of every name, by name."""
        return self._versions.list_active()

    # -- buckets ----------------------------------------------------------------------------

    def assign_config_to_bucket(
        self,
        bucket: str,
        config_id: int,
        assigned_by: str = "cli",
        reason: str | None = None,
    ) -> BucketAssignment:
        """From now on `bucket` runs `config_id`; the previous assignment stays in history."""
        return self._buckets.assign(bucket, config_id, assigned_by, reason)

    def rollback_to_version(
        self,
        bucket: str,
        name: str,
        version: int,
        assigned_by: str = "cli",
        reason: str | None = None,
    ) -> BucketAssignment:
        """Point `bucket` back at `name` v`version`, recorded as a new assignment."""
        return self._buckets.rollback(bucket, name, version, assigned_by, reason)

    def get_bucket_config(self, bucket: str) -> ConfigVersion:
        """The configuration `bucket` runs now: one indexed query."""
        return self._buckets.config(bucket)

    def bucket_history(self, bucket: str) -> list[BucketAssignment]:
        """Every assignment of `bucket`, oldest first (empty when the bucket is unknown)."""
        return self._buckets.history(bucket)

    def bucket_at(self, bucket: str, when: datetime) -> BucketAssignment | None:
        """The assignment in force at `when` (who set it, when, why); None before the first."""
        return self._buckets.at(bucket, when)

    def list_buckets(self) -> list[str]:
        return self._buckets.names()

    def set_bucket_context(self, bucket: str, context: dict[str, Any], set_by: str = "cli") -> str:
        """Store the context `bucket` is planned with by a batch (replacing the one before);
        returns its digest. Bounded like a run's context (`PLANFORGE_RUNS_MAX_CONTEXT_BYTES`)."""
        return self._bucket_contexts().set(bucket, context, set_by)

    def get_bucket_context(self, bucket: str) -> dict[str, Any] | None:
        """The context stored for `bucket`, or None when it has none."""
        return self._bucket_contexts().get(bucket)

    def _bucket_contexts(self) -> BucketContexts:
        limit = self.runs.settings.max_context_bytes
        return BucketContexts(self._sessions, limit, ENV_MAX_CONTEXT_BYTES)

    # -- presets ----------------------------------------------------------------------------

    def list_presets(self, tag: str | None = None) -> list[Preset]:
        """All presets by name, or those carrying `tag` (tags are lower case)."""
        return self._presets.tagged(tag)

    def get_preset(self, id_or_name: int | str, count_download: bool = True) -> Preset:
        """A preset by id or name; fetching it counts a download unless told otherwise."""
        return self._presets.get(id_or_name, count_download)

    def create_preset(
        self,
        name: str,
        description: str,
        toml: str,
        author: str,
        tags: Sequence[str] = (),
    ) -> Preset:
        """A new shared preset; its TOML is validated like a configuration version."""
        return self._presets.create(name, description, toml, author, tags)

    def rate_preset(self, id_or_name: int | str, rating: int) -> Preset:
        """Add one vote of 1..5 stars."""
        return self._presets.rate(id_or_name, rating)

    # -- API users --------------------------------------------------------------------------

    def create_user(self, name: str, role: str, created_by: str = "cli") -> tuple[User, str]:
        """A new API user and its token; the token is returned once and only its hash kept.

        The name must be a valid runtime id (`planforge.ids`): it becomes each run's user id.
        """
        return self._accounts.create(name, role, created_by)

    def revoke_user(self, name: str, actor: str = "cli") -> User:
        """Refuse `name`'s token from now on, on every server; the user is kept, marked revoked.

        Revoking a revoked user changes nothing. `rotate_user` gives it a working token again.
        """
        return self._accounts.revoke(name, actor)

    def rotate_user(self, name: str, actor: str = "cli") -> tuple[User, str]:
        """A new token for `name`, returned once; the old one stops working at once, and a
        revoked user is re-enabled with the new one."""
        return self._accounts.rotate(name, actor)

    def user_for_token(self, token: str) -> User | None:
        """The active user holding `token`, or None; by hash, one indexed query."""
        return self._accounts.for_token(token)

    def touch_users(self, user_ids: Sequence[int]) -> int:
        """Record a use of these users' tokens now, except for those with one within a
        minute; one transaction for the batch. Servers gather uses and write them in batches,
        so requests do not become writes. The number of users updated."""
        return self._accounts.touch(user_ids)

    def touch_user(self, user_id: int) -> bool:
        """`touch_users` for one user: whether its last use was written."""
        return self.touch_users([user_id]) > 0

    def auth_epoch(self) -> int:
        """A counter every revocation and rotation moves on: token caches watch it."""
        return self._accounts.epoch()

    def list_users(self) -> list[User]:
        """Every API user by name, revoked ones too (never their token hashes)."""
        return self._accounts.everyone()

    # -- audit and diagnostics --------------------------------------------------------------

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit entries, newest first."""
        return self._audit_log.newest(limit)

    def count_rows(self) -> dict[str, int]:
        """Rows per table, for diagnostics and tests that check nothing was stored."""
        return count_rows(self._sessions)

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` after every committed change; returns the function that stops it."""
        return self._subscribers.subscribe(callback)
