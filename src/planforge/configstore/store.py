"""The configuration store: versioned planner configurations, bucket history, presets, audit.

Every public method runs in its own short transaction on a pooled connection, so one store
serves many threads. Writes on SQLite also pass a per-store lock before `BEGIN IMMEDIATE`
(threads queue on the lock instead of spinning in SQLite's busy handler); other processes
are kept out by SQLite's write lock, and on PostgreSQL by row locks on the per-name version
counter. Every change writes its audit row in the same transaction, and subscribers hear of
it only after the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from planforge.configstore import users
from planforge.configstore.audit import write_audit
from planforge.configstore.db import (
    WRITE_OPTION,
    create_store_engine,
    is_sqlite,
    resolve_url,
)
from planforge.configstore.errors import (
    BucketNotFound,
    ConfigNotFound,
    DocumentTooLarge,
    InvalidConfig,
    InvalidInput,
    PresetExists,
    PresetNotFound,
    StoreError,
    UserExists,
    VersionConflict,
)
from planforge.configstore.models import (
    NAME_LENGTH,
    TAG_LENGTH,
    TITLE_LENGTH,
    AuditRow,
    BucketAssignmentRow,
    NameCounterRow,
    PlannerConfigRow,
    PresetRow,
    PresetTagRow,
)
from planforge.configstore.records import (
    AuditEntry,
    BucketAssignment,
    ConfigChange,
    ConfigVersion,
    CreateResult,
    Preset,
    User,
)
from planforge.configstore.users import ROLES, token_digest
from planforge.holistic.config import ConfigError, parse_config
from planforge.logs import get_logger
from planforge.redact import redact_text

if TYPE_CHECKING:
    from planforge.portfolio.planner import HolisticPortfolioPlanner

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ROLES",
    "ConfigStore",
    "Subscriber",
    "content_digest",
    "token_digest",
]

MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_SUBSCRIBERS: Final = 256
MAX_AUDIT_LIMIT: Final = 10_000
MAX_TAGS: Final = 32
SCRIPT_LOCATION: Final = "planforge.configstore:migrations"
SEED_AUTHOR: Final = "planforge"
SEED_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "aggressive": ("growth", "shipped"),
    "conservative": ("low-risk", "shipped"),
    "default": ("balanced", "shipped"),
}

Subscriber = Callable[[ConfigChange], None]

# Alembic keeps its running environment in module globals: one upgrade per process at a time.
_ALEMBIC_LOCK = threading.Lock()

_log = get_logger("configstore")

C = PlannerConfigRow
A = BucketAssignmentRow
P = PresetRow

_CONFIG_COLUMNS = (
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
_ASSIGNMENT_COLUMNS = (
    A.id,
    A.bucket,
    A.config_id,
    C.name,
    C.version,
    A.assigned_at,
    A.assigned_by,
    A.reason,
)
_PRESET_COLUMNS = (
    P.id,
    P.name,
    P.description,
    P.toml,
    P.author,
    P.downloads,
    P.rating_sum,
    P.rating_count,
    P.created_at,
)

# The hot reads, built once (SQLAlchemy then reuses their compiled form from its cache).
_BUCKET_CONFIG = (
    select(*_CONFIG_COLUMNS)
    .join_from(A, C, A.config_id == C.id)
    .where(A.bucket == bindparam("bucket"))
    .order_by(A.id.desc())
    .limit(1)
)
_CONFIG_BY_ID = select(*_CONFIG_COLUMNS).where(C.id == bindparam("config_id"))
_ACTIVE_BY_NAME = select(*_CONFIG_COLUMNS).where(C.name == bindparam("name"), C.is_active)
_VERSION_BY_NAME = select(*_CONFIG_COLUMNS).where(
    C.name == bindparam("name"), C.version == bindparam("version")
)
# The write path's statements, built once too; parameters are passed at execution.
N = NameCounterRow
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
_INSERT_ASSIGNMENT = insert(A).returning(A.id)


def content_digest(text: str) -> str:
    """sha256 of the TOML exactly as stored (UTF-8), hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _config(row: Any) -> ConfigVersion:
    # rows of _CONFIG_COLUMNS, whose order is ConfigVersion's field order
    return ConfigVersion(*row)


def _assignment(row: Any) -> BucketAssignment:
    # rows of _ASSIGNMENT_COLUMNS, whose order is BucketAssignment's field order
    return BucketAssignment(*row)


def _check_text(field: str, value: object, limit: int) -> str:
    """A name-like argument: a non-blank single-line string without outer spaces."""
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(field, value, "must not be empty")
    if value != value.strip():
        raise InvalidInput(field, value, "must not start or end with whitespace")
    if len(value) > limit:
        raise InvalidInput(field, value, f"must be at most {limit} characters")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidInput(field, value, "must not contain control characters or newlines")
    return value


def _check_optional_text(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(field, value[:40] + "...", f"must be under {MAX_DOCUMENT_BYTES} chars")
    if "\x00" in value:  # PostgreSQL cannot store it; SQLite would: refuse it on both
        raise InvalidInput(field, value[:40], "must not contain NUL characters")
    return value


def _findable(name: object) -> bool:
    """Could a stored name equal this one? A name with a control character (a NUL, which
    PostgreSQL refuses to even compare) was never stored, so a lookup by it finds nothing
    on both databases without asking either."""
    return isinstance(name, str) and not any(unicodedata.category(char) == "Cc" for char in name)


def _check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise InvalidInput("tags", tags, "give a list of tags, not one string")
    cleaned = {
        _check_text("tag", tag.strip().lower() if isinstance(tag, str) else tag, TAG_LENGTH)
        for tag in tags
    }
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput("tags", len(cleaned), f"a preset has at most {MAX_TAGS} tags")
    return tuple(sorted(cleaned))


@dataclass(slots=True)
class _Seed:
    name: str
    description: str
    toml: str
    tags: tuple[str, ...]


_MAX_ID = 2**63 - 1


def _storable_id(value: object) -> bool:
    """Whether `value` can be a row id at all; anything else is simply not found (the
    databases reject integers beyond 64 bits with an overflow, not an empty result)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_ID


def _database_problem(error: BaseException) -> str:
    """The driver's own first line about a failure (redacted), without SQL or parameters."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else type(cause).__name__
    return redact_text(f"{type(cause).__name__}: {first}"[:300])


class ConfigStore:
    """Versioned planner configurations, bucket assignments, presets and their audit trail."""

    max_document_bytes: int = MAX_DOCUMENT_BYTES

    def __init__(
        self, url: str | None = None, *, home: Path | None = None, echo: bool = False
    ) -> None:
        try:
            self.url = resolve_url(url, home=home)
            self._engine = create_store_engine(self.url, echo=echo)
        except (SQLAlchemyError, ValueError, OSError) as exc:
            # the URL may carry a password: the message names the problem, never the URL
            where = "the given database URL" if url else "PLANFORGE_DATABASE_URL"
            raise StoreError(
                f"Cannot use {where}: {redact_text(str(exc))}. Give a sqlite:/// file path or "
                "a postgresql:// URL (user, host, port and database).",
            ) from exc
        self._sqlite = is_sqlite(self._engine)
        self._write_engine = (
            self._engine.execution_options(**{WRITE_OPTION: "IMMEDIATE"})
            if self._sqlite
            else self._engine
        )
        # SQLite has one writer at a time anyway; PostgreSQL writers only need row locks.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self._sqlite else contextlib.nullcontext()
        )
        self._ready = False
        self._closed = False
        self._ready_lock = threading.Lock()
        self._validator: HolisticPortfolioPlanner | None = None
        self._validator_lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._subscribers_lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> ConfigStore:
        """The store named by PLANFORGE_DATABASE_URL, else the SQLite file in PLANFORGE_HOME."""
        return cls()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and benchmarks; use the methods to write)."""
        return self._engine

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`: what messages may say about the database."""
        return str(self.url.get_backend_name())

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
        self._closed = True
        self._engine.dispose()

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision and seed the shipped presets.

        Idempotent, and safe when several processes start at once: the upgrade runs in one
        write transaction under the migration lock (see `db.lock_for_migration`).
        """
        if self._closed:
            raise StoreError("This configuration store is closed; open a new ConfigStore.")
        config = Config()
        config.set_main_option("script_location", SCRIPT_LOCATION)
        config.set_main_option("path_separator", "os")
        try:
            with (
                _ALEMBIC_LOCK,
                self._write_lock,
                self._db_errors("upgrade the schema"),
                self._write_engine.begin() as connection,
            ):
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                self._seed_presets(connection)
        except CommandError as exc:
            raise StoreError(
                f"Cannot upgrade the configuration store's schema: {exc}. The database may "
                "have been written by a newer planforge; upgrade planforge to open it.",
            ) from exc
        self._ready = True

    def _ensure_ready(self) -> None:
        if self._ready:
            if self._closed:
                raise StoreError("This configuration store is closed; open a new ConfigStore.")
            return
        with self._ready_lock:
            if not self._ready:
                self.migrate()

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _db_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (DBAPIError, SQLAlchemyError) as exc:
            raise StoreError(
                f"The database failed to {action}: {_database_problem(exc)}. Check that the "
                f"{self.backend} database named by PLANFORGE_DATABASE_URL is reachable and "
                "writable.",
                action=action,
            ) from exc

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        self._ensure_ready()
        with self._db_errors(action), self._engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        self._ensure_ready()
        with self._write_lock, self._db_errors(action), self._write_engine.begin() as connection:
            yield connection

    _audit = staticmethod(write_audit)

    # -- validation -------------------------------------------------------------------------

    def _validate_document(self, text: object, *, name: str | None) -> str:
        """Size first (cheap), then the holistic planner's own validator; raises, never stores."""
        if not isinstance(text, str):
            raise InvalidInput("config_toml", type(text).__name__, "must be the TOML text")
        size = len(text.encode("utf-8", errors="replace"))
        if size > self.max_document_bytes:
            raise DocumentTooLarge(size, self.max_document_bytes)
        if not text.strip():
            raise InvalidConfig(
                ConfigError("the document is empty; it would enable no module", source="toml"),
                name=name,
            )
        try:
            parse_config(
                text,
                registry=self._planner().registry,
                domain_settings=self._domain_settings(),
                source=name or "toml",
            )
        except ConfigError as exc:
            raise InvalidConfig(exc, name=name) from exc
        return text

    def _planner(self) -> HolisticPortfolioPlanner:
        # Built once per store: the registry behind it is what validation checks modules
        # against. parse_config is called directly rather than load_config, which would read
        # a one-line string naming a file or preset instead of validating the text itself.
        with self._validator_lock:
            if self._validator is None:
                from planforge.portfolio.planner import HolisticPortfolioPlanner

                self._validator = HolisticPortfolioPlanner()
            return self._validator

    @staticmethod
    def _domain_settings() -> type[Any]:
        from planforge.portfolio.domain import PortfolioSettings

        return PortfolioSettings

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
        _check_text("name", name, NAME_LENGTH)
        _check_text("title", title, TITLE_LENGTH)
        _check_text("created_by", created_by, NAME_LENGTH)
        description = _check_optional_text("description", description)
        if expected_version is not None and (
            isinstance(expected_version, bool)
            or not isinstance(expected_version, int)
            or expected_version < 0
        ):
            raise InvalidInput(
                "expected_version", expected_version, "must be a version number (0: none yet)"
            )
        text = self._validate_document(config_toml, name=name)
        digest = content_digest(text)
        with self._writing("create a configuration version") as connection:
            # the counter row is the per-name lock: a second writer waits here (PostgreSQL row
            # lock; on SQLite BEGIN IMMEDIATE already made this transaction the only writer)
            connection.execute(
                _NEW_COUNTER[connection.dialect.name], {"name": name, "last_version": 0}
            )
            last = connection.execute(_LOCK_COUNTER, {"b_name": name}).scalar_one()
            active_row = connection.execute(_ACTIVE_BY_NAME, {"name": name}).first()
            active = _config(active_row) if active_row is not None else None
            current = active.version if active is not None else 0
            if expected_version is not None and expected_version != current:
                raise VersionConflict(name, expected_version, current)
            if active is not None and active.digest == digest:
                return CreateResult(active, created=False)
            version = last + 1
            created_at = _now()
            connection.execute(_BUMP_COUNTER, {"b_name": name, "b_version": version})
            if active is not None:
                connection.execute(_DEACTIVATE, {"b_id": active.id})
            parent_id = active.id if active is not None else None
            config_id = connection.execute(
                _INSERT_CONFIG,
                {
                    "name": name,
                    "title": title,
                    "description": description,
                    "toml": text,
                    "digest": digest,
                    "version": version,
                    "is_active": True,
                    "created_at": created_at,
                    "created_by": created_by,
                    "parent_id": parent_id,
                },
            ).scalar_one()
            self._audit(
                connection,
                created_by,
                "config.create",
                "planner_config",
                config_id,
                {"name": name, "version": version, "digest": digest, "parent_id": parent_id},
            )
        created = ConfigVersion(
            id=config_id,
            name=name,
            title=title,
            description=description,
            toml=text,
            digest=digest,
            version=version,
            active=True,
            created_at=created_at,
            created_by=created_by,
            parent_id=parent_id,
        )
        _log.info("config version created", name=name, version=version, config_id=config_id)
        self._emit(ConfigChange("version_created", name, config_id, digest, version=version))
        return CreateResult(created, created=True)

    def get_config_by_id(self, config_id: int) -> ConfigVersion:
        if not _storable_id(config_id):
            raise ConfigNotFound(config_id)
        with self._reading("read a configuration") as connection:
            row = connection.execute(_CONFIG_BY_ID, {"config_id": config_id}).first()
        if row is None:
            raise ConfigNotFound(config_id)
        return _config(row)

    def get_version(self, name: str, version: int) -> ConfigVersion:
        if not _findable(name):
            raise ConfigNotFound(name=name, version=version)
        with self._reading("read a configuration version") as connection:
            row = connection.execute(_VERSION_BY_NAME, {"name": name, "version": version}).first()
        if row is None:
            raise ConfigNotFound(name=name, version=version)
        return _config(row)

    def get_active(self, name: str) -> ConfigVersion:
        if not _findable(name):
            raise ConfigNotFound(name=name)
        with self._reading("read the active configuration") as connection:
            row = connection.execute(_ACTIVE_BY_NAME, {"name": name}).first()
        if row is None:
            raise ConfigNotFound(name=name)
        return _config(row)

    def get_version_history(self, name: str) -> list[ConfigVersion]:
        """Every version of `name`, oldest first (empty when the name is unknown)."""
        if not _findable(name):
            return []
        with self._reading("read a configuration history") as connection:
            rows = connection.execute(
                select(*_CONFIG_COLUMNS).where(C.name == name).order_by(C.version)
            ).all()
        return [_config(row) for row in rows]

    def list_configs(self) -> list[ConfigVersion]:
        """The active version of every name, by name."""
        with self._reading("list configurations") as connection:
            rows = connection.execute(
                select(*_CONFIG_COLUMNS).where(C.is_active).order_by(C.name)
            ).all()
        return [_config(row) for row in rows]

    # -- buckets ----------------------------------------------------------------------------

    def assign_config_to_bucket(
        self,
        bucket: str,
        config_id: int,
        assigned_by: str = "cli",
        reason: str | None = None,
    ) -> BucketAssignment:
        """From now on `bucket` runs `config_id`; the previous assignment stays in history."""
        _check_text("bucket", bucket, NAME_LENGTH)
        _check_text("assigned_by", assigned_by, NAME_LENGTH)
        reason = _check_optional_text("reason", reason)
        if not _storable_id(config_id):
            raise ConfigNotFound(config_id)
        with self._writing("assign a configuration to a bucket") as connection:
            row = connection.execute(_CONFIG_BY_ID, {"config_id": config_id}).first()
            if row is None:
                raise ConfigNotFound(config_id)
            config = _config(row)
            assignment = self._assign(
                connection, bucket, config, assigned_by, reason, "bucket.assign"
            )
        self._announce(assignment, config)
        return assignment

    def rollback_to_version(
        self,
        bucket: str,
        name: str,
        version: int,
        assigned_by: str = "cli",
        reason: str | None = None,
    ) -> BucketAssignment:
        """Point `bucket` back at `name` v`version`, recorded as a new assignment."""
        _check_text("bucket", bucket, NAME_LENGTH)
        _check_text("assigned_by", assigned_by, NAME_LENGTH)
        reason = _check_optional_text("reason", reason)
        if not _findable(name):
            raise ConfigNotFound(name=name, version=version)
        note = f"rollback to {name} v{version}" + (f": {reason}" if reason else "")
        with self._writing("roll a bucket back") as connection:
            if connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first() is None:
                raise BucketNotFound(bucket)
            row = connection.execute(_VERSION_BY_NAME, {"name": name, "version": version}).first()
            if row is None:
                raise ConfigNotFound(name=name, version=version)
            config = _config(row)
            assignment = self._assign(
                connection, bucket, config, assigned_by, note, "bucket.rollback"
            )
        self._announce(assignment, config)
        return assignment

    def _assign(
        self,
        connection: Connection,
        bucket: str,
        config: ConfigVersion,
        actor: str,
        reason: str | None,
        action: str,
    ) -> BucketAssignment:
        previous = connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first()
        assigned_at = _now()
        assignment_id = connection.execute(
            _INSERT_ASSIGNMENT,
            {
                "bucket": bucket,
                "config_id": config.id,
                "assigned_at": assigned_at,
                "assigned_by": actor,
                "reason": reason,
            },
        ).scalar_one()
        self._audit(
            connection,
            actor,
            action,
            "bucket",
            bucket,
            {
                "assignment_id": assignment_id,
                "config_id": config.id,
                "name": config.name,
                "version": config.version,
                "previous_config_id": previous.id if previous is not None else None,
                "reason": reason,
            },
        )
        return BucketAssignment(
            id=assignment_id,
            bucket=bucket,
            config_id=config.id,
            config_name=config.name,
            config_version=config.version,
            assigned_at=assigned_at,
            assigned_by=actor,
            reason=reason,
        )

    def _announce(self, assignment: BucketAssignment, config: ConfigVersion) -> None:
        _log.info(
            "bucket assigned",
            bucket=assignment.bucket,
            config_id=config.id,
            name=config.name,
            version=config.version,
        )
        self._emit(
            ConfigChange(
                "bucket_assigned",
                config.name,
                config.id,
                config.digest,
                bucket=assignment.bucket,
                version=config.version,
            )
        )

    def get_bucket_config(self, bucket: str) -> ConfigVersion:
        """The configuration `bucket` runs now: one indexed query."""
        if not _findable(bucket):
            raise BucketNotFound(bucket)
        with self._reading("read a bucket's configuration") as connection:
            row = connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first()
        if row is None:
            raise BucketNotFound(bucket)
        return _config(row)

    def bucket_history(self, bucket: str) -> list[BucketAssignment]:
        """Every assignment of `bucket`, oldest first (empty when the bucket is unknown)."""
        if not _findable(bucket):
            return []
        with self._reading("read a bucket's history") as connection:
            rows = connection.execute(
                select(*_ASSIGNMENT_COLUMNS)
                .join_from(A, C, A.config_id == C.id)
                .where(A.bucket == bucket)
                .order_by(A.id)
            ).all()
        return [_assignment(row) for row in rows]

    def bucket_at(self, bucket: str, when: datetime) -> BucketAssignment | None:
        """The assignment in force at `when` (who set it, when, why); None before the first."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidInput(
                "when", when, "give a time-zone aware datetime, e.g. datetime.now(UTC)"
            )
        if not _findable(bucket):
            return None
        with self._reading("read a bucket's history") as connection:
            row = connection.execute(
                select(*_ASSIGNMENT_COLUMNS)
                .join_from(A, C, A.config_id == C.id)
                .where(A.bucket == bucket, A.assigned_at <= when)
                .order_by(A.assigned_at.desc(), A.id.desc())
                .limit(1)
            ).first()
        return _assignment(row) if row is not None else None

    def list_buckets(self) -> list[str]:
        with self._reading("list buckets") as connection:
            return list(
                connection.execute(select(A.bucket).distinct().order_by(A.bucket)).scalars()
            )

    # -- presets ----------------------------------------------------------------------------

    def _seed_presets(self, connection: Connection) -> None:
        """Add the shipped presets that are missing (inside the migration transaction)."""
        from planforge.portfolio.planner import PRESETS, preset_text

        present = set(connection.execute(select(P.name).where(P.name.in_(PRESETS))).scalars())
        for name in sorted(set(PRESETS) - present):
            text = preset_text(name)
            self._insert_preset(
                connection,
                _Seed(name, _preset_description(name, text), text, SEED_TAGS.get(name, ())),
                SEED_AUTHOR,
                "preset.seed",
            )

    def _insert_preset(self, connection: Connection, seed: _Seed, author: str, action: str) -> int:
        preset_id = connection.execute(
            insert(P)
            .values(
                name=seed.name,
                description=seed.description,
                toml=seed.toml,
                author=author,
                downloads=0,
                rating_sum=0,
                rating_count=0,
                created_at=_now(),
            )
            .returning(P.id)
        ).scalar_one()
        if seed.tags:
            connection.execute(
                insert(PresetTagRow),
                [{"preset_id": preset_id, "tag": tag} for tag in seed.tags],
            )
        self._audit(
            connection,
            author,
            action,
            "preset",
            preset_id,
            {"name": seed.name, "tags": list(seed.tags), "digest": content_digest(seed.toml)},
        )
        return preset_id

    def _presets(self, connection: Connection, rows: Sequence[Any]) -> list[Preset]:
        """Records for preset rows, with all their tags fetched in one query."""
        ids = [row.id for row in rows]
        tags: dict[int, list[str]] = {preset_id: [] for preset_id in ids}
        if ids:
            for preset_id, tag in connection.execute(
                select(PresetTagRow.preset_id, PresetTagRow.tag)
                .where(PresetTagRow.preset_id.in_(ids))
                .order_by(PresetTagRow.preset_id, PresetTagRow.tag)
            ):
                tags[preset_id].append(tag)
        return [
            Preset(
                id=row.id,
                name=row.name,
                description=row.description,
                toml=row.toml,
                author=row.author,
                tags=tuple(tags[row.id]),
                downloads=row.downloads,
                rating=row.rating_sum / row.rating_count if row.rating_count else None,
                ratings=row.rating_count,
                created_at=row.created_at,
            )
            for row in rows
        ]

    @staticmethod
    def _preset_id(connection: Connection, id_or_name: int | str) -> int:
        if isinstance(id_or_name, bool) or not isinstance(id_or_name, int | str):
            raise InvalidInput("preset", id_or_name, "give a preset id or name")
        found: int | None = None
        if isinstance(id_or_name, str) and not _findable(id_or_name):
            raise PresetNotFound(id_or_name)
        if isinstance(id_or_name, str):
            found = connection.execute(select(P.id).where(P.name == id_or_name)).scalar()
            if found is None and id_or_name.isdigit():
                id_or_name = int(id_or_name)
        if found is None and isinstance(id_or_name, int) and _storable_id(id_or_name):
            found = connection.execute(select(P.id).where(P.id == id_or_name)).scalar()
        if found is None:
            raise PresetNotFound(id_or_name)
        return found

    def _preset_by_id(self, connection: Connection, preset_id: int) -> Preset:
        rows = connection.execute(select(*_PRESET_COLUMNS).where(P.id == preset_id)).all()
        return self._presets(connection, rows)[0]

    def list_presets(self, tag: str | None = None) -> list[Preset]:
        """All presets by name, or those carrying `tag` (tags are lower case)."""
        query = select(*_PRESET_COLUMNS).order_by(P.name)
        if tag is not None:
            if not _findable(tag):
                return []
            wanted = tag.strip().lower()
            query = query.where(
                P.id.in_(select(PresetTagRow.preset_id).where(PresetTagRow.tag == wanted))
            )
        with self._reading("list presets") as connection:
            return self._presets(connection, connection.execute(query).all())

    def get_preset(self, id_or_name: int | str, count_download: bool = True) -> Preset:
        """A preset by id or name; fetching it counts a download unless told otherwise."""
        if not count_download:
            with self._reading("read a preset") as connection:
                return self._preset_by_id(connection, self._preset_id(connection, id_or_name))
        with self._writing("read a preset") as connection:
            preset_id = self._preset_id(connection, id_or_name)
            connection.execute(update(P).where(P.id == preset_id).values(downloads=P.downloads + 1))
            return self._preset_by_id(connection, preset_id)

    def create_preset(
        self,
        name: str,
        description: str,
        toml: str,
        author: str,
        tags: Sequence[str] = (),
    ) -> Preset:
        """A new shared preset; its TOML is validated like a configuration version."""
        _check_text("name", name, NAME_LENGTH)
        _check_text("author", author, NAME_LENGTH)
        checked_description = _check_optional_text("description", description) or ""
        cleaned_tags = _check_tags(tags)
        text = self._validate_document(toml, name=name)
        try:
            with self._writing("create a preset") as connection:
                if connection.execute(select(P.id).where(P.name == name)).first() is not None:
                    raise PresetExists(name)
                preset_id = self._insert_preset(
                    connection,
                    _Seed(name, checked_description, text, cleaned_tags),
                    author,
                    "preset.create",
                )
                preset = self._preset_by_id(connection, preset_id)
        except StoreError as exc:
            # two creators racing on PostgreSQL: the loser hits the unique constraint
            if isinstance(exc.__cause__, IntegrityError):
                raise PresetExists(name) from exc
            raise
        return preset

    def rate_preset(self, id_or_name: int | str, rating: int) -> Preset:
        """Add one vote of 1..5 stars."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InvalidInput("rating", rating, "a rating is a whole number from 1 to 5")
        with self._writing("rate a preset") as connection:
            preset_id = self._preset_id(connection, id_or_name)
            connection.execute(
                update(P)
                .where(P.id == preset_id)
                .values(rating_sum=P.rating_sum + rating, rating_count=P.rating_count + 1)
            )
            self._audit(connection, "cli", "preset.rate", "preset", preset_id, {"rating": rating})
            return self._preset_by_id(connection, preset_id)

    # -- API users (users.py holds their rules and SQL) --------------------------------------

    def create_user(self, name: str, role: str, created_by: str = "cli") -> tuple[User, str]:
        """A new API user and its token; the token is returned once and only its hash kept.

        The name must be a valid runtime id (`planforge.ids`): it becomes each run's user id.
        """
        users.check_new_user(name, role)
        _check_text("created_by", created_by, NAME_LENGTH)
        try:
            with self._writing("create an API user") as connection:
                return users.create(connection, name, role, created_by)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race for the name
                raise UserExists(name) from exc
            raise

    def revoke_user(self, name: str, actor: str = "cli") -> User:
        """Refuse `name`'s token from now on, on every server; the user is kept, marked revoked.

        Revoking a revoked user changes nothing. `rotate_user` gives it a working token again.
        """
        _check_text("actor", actor, NAME_LENGTH)
        with self._writing("revoke an API user") as connection:
            return users.revoke(connection, name, actor)

    def rotate_user(self, name: str, actor: str = "cli") -> tuple[User, str]:
        """A new token for `name`, returned once; the old one stops working at once, and a
        revoked user is re-enabled with the new one."""
        _check_text("actor", actor, NAME_LENGTH)
        with self._writing("rotate an API user's token") as connection:
            return users.rotate(connection, name, actor)

    def user_for_token(self, token: str) -> User | None:
        """The active user holding `token`, or None; by hash, one indexed query."""
        if not isinstance(token, str) or not token:
            return None
        with self._reading("look up an API token") as connection:
            return users.user_for_token(connection, token)

    def touch_users(self, user_ids: Sequence[int]) -> int:
        """Record a use of these users' tokens now, except for those with one within a
        minute; one transaction for the batch. Servers gather uses and write them in batches,
        so requests do not become writes. The number of users updated."""
        with self._writing("record API users' last use") as connection:
            return users.touch(connection, user_ids)

    def touch_user(self, user_id: int) -> bool:
        """`touch_users` for one user: whether its last use was written."""
        return self.touch_users([user_id]) > 0

    def auth_epoch(self) -> int:
        """A counter every revocation and rotation moves on: token caches watch it."""
        with self._reading("read the auth epoch") as connection:
            return users.read_epoch(connection)

    def list_users(self) -> list[User]:
        """Every API user by name, revoked ones too (never their token hashes)."""
        with self._reading("list API users") as connection:
            return users.list_users(connection)

    # -- audit ------------------------------------------------------------------------------

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit entries, newest first."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_AUDIT_LIMIT
        ):
            raise InvalidInput("limit", limit, f"must be between 1 and {MAX_AUDIT_LIMIT}")
        with self._reading("read the audit log") as connection:
            rows = connection.execute(
                select(
                    AuditRow.id,
                    AuditRow.at,
                    AuditRow.actor,
                    AuditRow.action,
                    AuditRow.entity,
                    AuditRow.entity_id,
                    AuditRow.detail,
                )
                .order_by(AuditRow.id.desc())
                .limit(limit)
            ).all()
        return [
            AuditEntry(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                entity=row.entity,
                entity_id=row.entity_id,
                detail=dict(row.detail or {}),
            )
            for row in rows
        ]

    def count_rows(self) -> dict[str, int]:
        """Rows per table, for diagnostics and tests that check nothing was stored."""
        tables = (C, NameCounterRow, A, P, PresetTagRow, AuditRow)
        with self._reading("count rows") as connection:
            return {
                table.__tablename__: connection.execute(
                    select(func.count()).select_from(table)
                ).scalar_one()
                for table in tables
            }

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` after every committed change; returns the function that stops it."""
        with self._subscribers_lock:
            if len(self._subscribers) >= MAX_SUBSCRIBERS:
                raise StoreError(
                    f"This store already has {MAX_SUBSCRIBERS} subscribers; unsubscribe the "
                    "ones you no longer need.",
                    limit=MAX_SUBSCRIBERS,
                )
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._subscribers_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, change: ConfigChange) -> None:
        with self._subscribers_lock:
            subscribers = tuple(self._subscribers)
        for callback in subscribers:
            try:
                callback(change)
            except Exception:
                # the change is committed; a failing listener must not turn it into an error
                _log.exception(
                    "config change subscriber failed",
                    kind=change.kind,
                    subscriber=getattr(callback, "__qualname__", repr(callback)),
                )


def _preset_description(name: str, text: str) -> str:
    """The comment lines at the top of a shipped preset, after its title line."""
    lines: list[str] = []
    for line in text.splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or f"The shipped {name} preset."
