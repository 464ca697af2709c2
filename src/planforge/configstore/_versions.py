"""Configuration versions: each name's numbered history, one active version per name.

A new version takes the per-name counter row as its lock (a PostgreSQL row lock; on SQLite
`BEGIN IMMEDIATE` already made the transaction the only writer), so two writers never
allocate the same number. The version, the counter and the audit row share one transaction;
subscribers hear of the change only after it commits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from planforge.configstore._audit import write_audit
from planforge.configstore._inputs import (
    check_optional_text,
    check_text,
    findable,
    now,
    storable_id,
)
from planforge.configstore._models import (
    NAME_LENGTH,
    TITLE_LENGTH,
    NameCounterRow,
    PlannerConfigRow,
)
from planforge.configstore._records import ConfigChange, ConfigVersion, CreateResult
from planforge.configstore._validator import content_digest
from planforge.configstore.errors import ConfigNotFound, InvalidInput, VersionConflict
from planforge.logs import get_logger

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions
    from planforge.configstore._subscribers import Subscribers
    from planforge.configstore._validator import DocumentValidator

__all__ = [
    "CONFIG_BY_ID",
    "CONFIG_COLUMNS",
    "VERSION_BY_NAME",
    "Versions",
    "config_record",
]

_log = get_logger("configstore")

C = PlannerConfigRow
N = NameCounterRow

#: In `ConfigVersion`'s field order, so a row of them is the record's arguments.
CONFIG_COLUMNS = (
    C.id,
    C.name,
    C.title,
    C.description,
    C.toml,
    C.digest,
    C.version,
    C.is_active,
    C.created_at,
    C.created_by,
    C.parent_id,
)

# The hot reads, built once (SQLAlchemy then reuses their compiled form from its cache).
CONFIG_BY_ID = select(*CONFIG_COLUMNS).where(C.id == bindparam("config_id"))
VERSION_BY_NAME = select(*CONFIG_COLUMNS).where(
    C.name == bindparam("name"), C.version == bindparam("version")
)
_ACTIVE_BY_NAME = select(*CONFIG_COLUMNS).where(C.name == bindparam("name"), C.is_active)
# The write path's statements, built once too; parameters are passed at execution.
_NEW_COUNTER = {
    "postgresql": postgresql.insert(N).on_conflict_do_nothing(index_elements=["name"]),
    "sqlite": sqlite.insert(N).on_conflict_do_nothing(index_elements=["name"]),
}
_LOCK_COUNTER = select(N.last_version).where(N.name == bindparam("b_name")).with_for_update()
_BUMP_COUNTER = (
    update(N).where(N.name == bindparam("b_name")).values(last_version=bindparam("b_version"))
)
_DEACTIVATE = update(C).where(C.id == bindparam("b_id")).values(is_active=False)
_INSERT_CONFIG = insert(C).returning(C.id)


def config_record(row: Any) -> ConfigVersion:
    """The record of a row of `CONFIG_COLUMNS`."""
    return ConfigVersion(*row)


@dataclass(frozen=True, slots=True)
class _Draft:
    """A checked, validated version about to be stored."""

    name: str
    title: str
    description: str | None
    text: str
    digest: str
    created_by: str


def _check_expected_version(expected_version: int | None) -> None:
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise InvalidInput(
            "expected_version", expected_version, "must be a version number (0: none yet)"
        )


class Versions:
    """Creates and reads configuration versions."""

    def __init__(
        self, sessions: Sessions, validator: DocumentValidator, subscribers: Subscribers
    ) -> None:
        self._sessions = sessions
        self._validator = validator
        self._subscribers = subscribers

    def create(
        self,
        name: str,
        title: str,
        config_toml: str,
        description: str | None,
        created_by: str,
        expected_version: int | None,
    ) -> CreateResult:
        """See `ConfigStore.create_new_version`."""
        check_text("name", name, NAME_LENGTH)
        check_text("title", title, TITLE_LENGTH)
        check_text("created_by", created_by, NAME_LENGTH)
        description = check_optional_text("description", description)
        _check_expected_version(expected_version)
        text = self._validator.validate(config_toml, name=name)
        draft = _Draft(name, title, description, text, content_digest(text), created_by)
        with self._sessions.writing("create a configuration version") as connection:
            result = self._store_next(connection, draft, expected_version)
        if result.created:
            created = result.config
            _log.info(
                "config version created", name=name, version=created.version, config_id=created.id
            )
            change = ConfigChange(
                "version_created", name, created.id, created.digest, version=created.version
            )
            self._subscribers.emit(change)
        return result

    @staticmethod
    def _store_next(
        connection: Connection, draft: _Draft, expected_version: int | None
    ) -> CreateResult:
        """Inside the write transaction: lock the name's counter, check, insert, audit."""
        name = draft.name
        # the counter row is the per-name lock: a second writer waits here (PostgreSQL row
        # lock; on SQLite BEGIN IMMEDIATE already made this transaction the only writer)
        connection.execute(_NEW_COUNTER[connection.dialect.name], {"name": name, "last_version": 0})
        last = connection.execute(_LOCK_COUNTER, {"b_name": name}).scalar_one()
        active_row = connection.execute(_ACTIVE_BY_NAME, {"name": name}).first()
        active = config_record(active_row) if active_row is not None else None
        current = active.version if active is not None else 0
        if expected_version is not None and expected_version != current:
            raise VersionConflict(name, expected_version, current)
        if active is not None and active.digest == draft.digest:
            return CreateResult(active, created=False)
        version = last + 1
        created_at = now()
        connection.execute(_BUMP_COUNTER, {"b_name": name, "b_version": version})
        if active is not None:
            connection.execute(_DEACTIVATE, {"b_id": active.id})
        created = ConfigVersion(
            id=0,
            name=name,
            title=draft.title,
            description=draft.description,
            toml=draft.text,
            digest=draft.digest,
            version=version,
            active=True,
            created_at=created_at,
            created_by=draft.created_by,
            parent_id=active.id if active is not None else None,
        )
        config_id = _insert_version(connection, created)
        return CreateResult(replace(created, id=config_id), created=True)

    def by_id(self, config_id: int) -> ConfigVersion:
        if not storable_id(config_id):
            raise ConfigNotFound(config_id)
        with self._sessions.reading("read a configuration") as connection:
            row = connection.execute(CONFIG_BY_ID, {"config_id": config_id}).first()
        if row is None:
            raise ConfigNotFound(config_id)
        return config_record(row)

    def version(self, name: str, version: int) -> ConfigVersion:
        if not findable(name):
            raise ConfigNotFound(name=name, version=version)
        with self._sessions.reading("read a configuration version") as connection:
            row = connection.execute(VERSION_BY_NAME, {"name": name, "version": version}).first()
        if row is None:
            raise ConfigNotFound(name=name, version=version)
        return config_record(row)

    def active(self, name: str) -> ConfigVersion:
        if not findable(name):
            raise ConfigNotFound(name=name)
        with self._sessions.reading("read the active configuration") as connection:
            row = connection.execute(_ACTIVE_BY_NAME, {"name": name}).first()
        if row is None:
            raise ConfigNotFound(name=name)
        return config_record(row)

    def history(self, name: str) -> list[ConfigVersion]:
        if not findable(name):
            return []
        with self._sessions.reading("read a configuration history") as connection:
            rows = connection.execute(
                select(*CONFIG_COLUMNS).where(C.name == name).order_by(C.version)
            ).all()
        return [config_record(row) for row in rows]

    def list_active(self) -> list[ConfigVersion]:
        with self._sessions.reading("list configurations") as connection:
            rows = connection.execute(
                select(*CONFIG_COLUMNS).where(C.is_active).order_by(C.name)
            ).all()
        return [config_record(row) for row in rows]


def _insert_version(connection: Connection, config: ConfigVersion) -> int:
    """Insert `config` (its id is ignored) and its audit row; the new row's id."""
    config_id: int = connection.execute(
        _INSERT_CONFIG,
        {
            "name": config.name,
            "title": config.title,
            "description": config.description,
            "toml": config.toml,
            "digest": config.digest,
            "version": config.version,
            "is_active": True,
            "created_at": config.created_at,
            "created_by": config.created_by,
            "parent_id": config.parent_id,
        },
    ).scalar_one()
    write_audit(
        connection,
        config.created_by,
        "config.create",
        "planner_config",
        config_id,
        {
            "name": config.name,
            "version": config.version,
            "digest": config.digest,
            "parent_id": config.parent_id,
        },
    )
    return config_id
