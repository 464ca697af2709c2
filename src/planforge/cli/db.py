"""`planforge db upgrade`: the configuration store's migrations."""

from __future__ import annotations

import typer

from planforge.cli._apps import db_app
from planforge.cli._common import _guard
from planforge.cli._store import _store


@db_app.command("upgrade")
@_guard
def db_upgrade() -> None:
    """Apply the configuration store's migrations (also done automatically on first use)."""
    with _store() as store:
        store.migrate()
        where = store.url.render_as_string(hide_password=True)
    typer.echo(f"database is up to date: {where}")
