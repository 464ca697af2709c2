"""The store's transactions: one engine, a read session and a write session per call.

Every public method of the store runs in its own short transaction on a pooled connection,
so one store serves many threads. Writes on SQLite also pass a per-store lock before
`BEGIN IMMEDIATE` (threads queue on the lock instead of spinning in SQLite's busy handler);
other processes are kept out by SQLite's write lock, and on PostgreSQL by row locks. The
first session of a store upgrades the schema, once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from planforge.configstore._db import WRITE_OPTION, create_store_engine, is_sqlite, resolve_url
from planforge.configstore.errors import StoreError
from planforge.redact import redact_text

__all__ = ["Sessions"]


def _database_problem(error: BaseException) -> str:
    """The driver's own first line about a failure (redacted), without SQL or parameters."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else type(cause).__name__
    return redact_text(f"{type(cause).__name__}: {first}"[:300])


class Sessions:
    """Opens the store's transactions; `prepare` brings the schema up to date before the first.

    Each room of the store (versions, buckets, presets, users, audit) holds one and opens
    its own transactions, so a change and its audit row always share one.
    """

    def __init__(
        self,
        url: str | None,
        *,
        home: Path | None,
        echo: bool,
        prepare: Callable[[Sessions], None],
    ) -> None:
        try:
            self.url: URL = resolve_url(url, home=home)
            self.engine: Engine = create_store_engine(self.url, echo=echo)
        except (SQLAlchemyError, ValueError, OSError) as exc:
            # the URL may carry a password: the message names the problem, never the URL
            where = "the given database URL" if url else "PLANFORGE_DATABASE_URL"
            raise StoreError(
                f"Cannot use {where}: {redact_text(str(exc))}. Give a sqlite:/// file path or "
                "a postgresql:// URL (user, host, port and database).",
            ) from exc
        sqlite = is_sqlite(self.engine)
        self._write_engine = (
            self.engine.execution_options(**{WRITE_OPTION: "IMMEDIATE"}) if sqlite else self.engine
        )
        # SQLite has one writer at a time anyway; PostgreSQL writers only need row locks.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if sqlite else contextlib.nullcontext()
        )
        self._prepare = prepare
        self._ready = False
        self._closed = False
        self._ready_lock = threading.Lock()

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`: what messages may say about the database."""
        return str(self.url.get_backend_name())

    def close(self) -> None:
        """Release the pooled connections; no session opens afterwards."""
        self._closed = True
        self.engine.dispose()

    def check_open(self) -> None:
        if self._closed:
            raise StoreError("This configuration store is closed; open a new ConfigStore.")

    def prepare(self) -> None:
        """Bring the schema up to date now (see `ConfigStore.migrate`)."""
        self.check_open()
        self._prepare(self)
        self._ready = True

    def _ensure_ready(self) -> None:
        if self._ready:
            self.check_open()
            return
        with self._ready_lock:
            if not self._ready:
                self.prepare()

    @contextlib.contextmanager
    def db_errors(self, action: str) -> Iterator[None]:
        """Database failures as a `StoreError` naming `action`, never the SQL or its values."""
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
    def reading(self, action: str) -> Iterator[Connection]:
        """A connection for reads, on a schema that is up to date."""
        self._ensure_ready()
        with self.db_errors(action), self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def writing(self, action: str) -> Iterator[Connection]:
        """A write transaction, on a schema that is up to date; it commits when the block ends."""
        self._ensure_ready()
        with self.write_transaction(action) as connection:
            yield connection

    @contextlib.contextmanager
    def write_transaction(self, action: str) -> Iterator[Connection]:
        """A write transaction without the schema check: the schema upgrade runs in one."""
        with self._write_lock, self.db_errors(action), self._write_engine.begin() as connection:
            yield connection
