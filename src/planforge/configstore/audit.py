"""The audit trail's one writer: a change adds its row inside the change's own transaction,
so the trail never records a change that was rolled back, nor misses one that was kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert

from planforge.configstore.models import AuditRow

__all__ = ["write_audit"]

_INSERT_AUDIT = insert(AuditRow)


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
