"""The audit trail: its one writer, and its reader.

A change adds its row inside the change's own transaction, so the trail never records a
change that was rolled back, nor misses one that was kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, insert, select

from planforge.configstore._models import AuditRow
from planforge.configstore._records import AuditEntry
from planforge.configstore.errors import InvalidInput

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions

__all__ = ["MAX_AUDIT_LIMIT", "AuditLog", "write_audit"]

MAX_AUDIT_LIMIT: Final = 10_000

_INSERT_AUDIT = insert(AuditRow)
_ENTRY_COLUMNS = (
    AuditRow.id,
    AuditRow.at,
    AuditRow.actor,
    AuditRow.action,
    AuditRow.entity,
    AuditRow.entity_id,
    AuditRow.detail,
)


def write_audit(
    connection: Connection,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    detail: dict[str, Any],
) -> None:
    connection.execute(
        _INSERT_AUDIT,
        {
            "at": datetime.now(UTC),
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": str(entity_id),
            "detail": detail,
        },
    )


class AuditLog:
    """Reads the trail back, newest first."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def newest(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_AUDIT_LIMIT
        ):
            raise InvalidInput("limit", limit, f"must be between 1 and {MAX_AUDIT_LIMIT}")
        with self._sessions.reading("read the audit log") as connection:
            rows = connection.execute(
                select(*_ENTRY_COLUMNS).order_by(AuditRow.id.desc()).limit(limit)
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
