"""Where the store's database is and how to talk to it.

SQLite (the embedded default) runs in WAL mode so readers never wait for the writer, with
`synchronous=FULL`: every commit is fsynced before it is acknowledged, so an acknowledged
write survives not only a killed process (which WAL with NORMAL already survives) but also
an OS crash or power cut. On this kind of disk it costs a fraction of a millisecond per
commit and configuration writes are rare, so the stronger guarantee is cheap.

pysqlite's own transaction handling is switched off: the store emits `BEGIN` itself, and
`BEGIN IMMEDIATE` for writes (engine option `sqlite_begin="IMMEDIATE"`), so a writer takes
the database's write lock before it reads the state it is about to change; two writers can
then never allocate the same version number.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

import platformdirs
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "BUSY_TIMEOUT_MS",
    "ENV_DATABASE_URL",
    "ENV_HOME",
    "WRITE_OPTION",
    "create_store_engine",
    "default_url",
    "is_sqlite",
    "lock_for_migration",
    "normalise_url",
    "planforge_home",
    "resolve_url",
]

ENV_DATABASE_URL: Final = "PLANFORGE_DATABASE_URL"
ENV_HOME: Final = "PLANFORGE_HOME"
DATABASE_FILE: Final = "planforge.db"
BUSY_TIMEOUT_MS: Final = 30_000
WRITE_OPTION: Final = "sqlite_begin"
_MIGRATION_LOCK: Final = 0x706C_6667  # "plfg": the advisory lock class of our upgrades
_POOL_SIZE: Final = 8
_MAX_OVERFLOW: Final = 16


def planforge_home() -> Path:
    """`PLANFORGE_HOME`, else the user data directory."""
    configured = os.environ.get(ENV_HOME, "").strip()
    return Path(configured) if configured else Path(platformdirs.user_data_dir("planforge"))


def default_url(home: Path | None = None) -> str:
    path = (home if home is not None else planforge_home()) / DATABASE_FILE
    return f"sqlite:///{path}"


def normalise_url(url: str | URL) -> URL:
    """PostgreSQL URLs without a driver (or with psycopg2's name) use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def resolve_url(url: str | None = None, *, home: Path | None = None) -> URL:
    """An explicit URL, else `PLANFORGE_DATABASE_URL`, else the SQLite file in the home."""
    chosen = url or os.environ.get(ENV_DATABASE_URL, "").strip() or default_url(home)
    return normalise_url(chosen)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def lock_for_migration(connection: Connection) -> None:
    """Serialise schema upgrades between processes, until the current transaction ends.

    PostgreSQL takes a transaction-scoped advisory lock per schema; SQLite needs nothing more
    because migrations run in a `BEGIN IMMEDIATE` transaction, which holds the write lock.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:kind, hashtext(current_schema()))"),
            {"kind": _MIGRATION_LOCK},
        )


def create_store_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine whose pool serves many threads; SQLite gets its PRAGMAs on every connect."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            parsed,
            echo=echo,
            pool_size=_POOL_SIZE,
            max_overflow=_MAX_OVERFLOW,
            pool_pre_ping=True,
        )
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if in_memory:
        # one shared connection, or every thread would see its own empty database
        options["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options.update(pool_size=_POOL_SIZE, max_overflow=_MAX_OVERFLOW)
    engine = create_engine(parsed, echo=echo, **options)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the store emits BEGIN itself (see _on_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enter_wal(cursor: Any) -> None:
    """Switch to WAL, waiting out other connections as the busy timeout would.

    On a new database file, processes that connect at once race to switch it: the switch needs
    the database to itself, and SQLite answers "database is locked" at once instead of calling
    its busy handler, so the wait is ours (bounded by the same timeout).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(WRITE_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {'IMMEDIATE' if mode == 'IMMEDIATE' else 'DEFERRED'}")
