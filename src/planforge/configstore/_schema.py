"""The schema: upgrading it with Alembic (and seeding what ships with it), counting its rows.

The upgrade runs in one write transaction under the migration lock (see
`db.lock_for_migration`), so it is idempotent and safe when several processes start at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, func, select

from planforge.configstore._models import (
    AuditRow,
    BucketAssignmentRow,
    NameCounterRow,
    PlannerConfigRow,
    PresetRow,
    PresetTagRow,
    RunRow,
)
from planforge.configstore.errors import StoreError

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions

__all__ = ["SCRIPT_LOCATION", "count_rows", "upgrade_schema"]

SCRIPT_LOCATION: Final = "planforge.configstore:migrations"

# Alembic keeps its running environment in module globals: one upgrade per process at a time.
_ALEMBIC_LOCK = threading.Lock()

_COUNTED = (
    PlannerConfigRow,
    NameCounterRow,
    BucketAssignmentRow,
    PresetRow,
    PresetTagRow,
    AuditRow,
    RunRow,
)


def upgrade_schema(sessions: Sessions, seed: Callable[[Connection], None]) -> None:
    """Upgrade to the newest revision, then `seed` in the same transaction."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    try:
        with _ALEMBIC_LOCK, sessions.write_transaction("upgrade the schema") as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            seed(connection)
    except CommandError as exc:
        raise StoreError(
            f"Cannot upgrade the configuration store's schema: {exc}. The database may "
            "have been written by a newer planforge; upgrade planforge to open it.",
        ) from exc


def count_rows(sessions: Sessions) -> dict[str, int]:
    """Rows per table, for diagnostics and tests that check nothing was stored."""
    with sessions.reading("count rows") as connection:
        return {
            table.__tablename__: connection.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
            for table in _COUNTED
        }
