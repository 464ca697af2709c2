"""`planforge db upgrade`: the configuration store's migrations."""

from __future__ import annotations

import typer

from planforge.cli._apps import db_app
from planforge.cli._common import guarded
from planforge.cli._store import open_store

__all__ = ["db_upgrade"]


@db_app.command("upgrade")
@guarded
def db_upgrade() -> None:
    """Apply the configuration store's migrations (also done automatically on first use)."""
    with open_store() as store:
        store.migrate()
        url = store.url
    # where, without the URL itself: a URL may carry a password
    if store.backend == "sqlite":
        where = f"SQLite file {url.database}"
    else:
        where = f"{store.backend} database {url.database!r} on {url.host}:{url.port or 'default'}"
    typer.echo(f"database is up to date: {where}")
