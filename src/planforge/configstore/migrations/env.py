"""Alembic environment of the configuration store.

`ConfigStore.migrate()` passes its own connection (already inside a write transaction) in
`config.attributes["connection"]`; the `alembic` command line gets one from
`sqlalchemy.url` or, without it, from PLANFORGE_DATABASE_URL / the default SQLite file.
Either way the upgrade runs in one transaction under the migration lock, so two processes
starting at once never both apply a revision.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from planforge.configstore._db import (
    WRITE_OPTION,
    create_store_engine,
    lock_for_migration,
    resolve_url,
)
from planforge.configstore._models import Base

target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    lock_for_migration(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _migrate(given)
        return
    engine = create_store_engine(resolve_url(context.config.get_main_option("sqlalchemy.url")))
    try:
        with engine.execution_options(**{WRITE_OPTION: "IMMEDIATE"}).begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def run_offline() -> None:
    url = resolve_url(context.config.get_main_option("sqlalchemy.url"))
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
