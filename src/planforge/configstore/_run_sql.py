"""The runs table's statements that touch many rows: reading runs back, recovering expired
leases and pruning finished runs. Each takes the caller's connection, so `RunStore` decides
the transaction.

Every change is a conditional UPDATE or DELETE whose WHERE re-states what the caller saw (a
run still `running` with its lease still expired, a run still finished), so two replicas
doing the same upkeep at once can never both take one run: on PostgreSQL the loser's UPDATE
waits for the winner's row lock and then matches nothing, on SQLite the write lock makes
the transactions take turns. On PostgreSQL candidates are read `FOR UPDATE SKIP LOCKED`, so
concurrent recoverers share the work instead of queueing on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Select, delete, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from planforge.configstore._models import RunRow
from planforge.configstore._run_records import (
    CANCELLED,
    FINISHED_STATUSES,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    StoredRun,
    decode_context,
    json_text,
    parse_json_text,
)
from planforge.configstore._run_settings import RunSettings

__all__ = [
    "RECOVER_BATCH",
    "columns",
    "prune_finished",
    "recover_expired",
    "stored_run",
]

#: At most this many expired runs are recovered per call; the next call takes the rest.
RECOVER_BATCH: Final = 500

R = RunRow

_SUMMARY: Final = (
    R.run_id,
    R.user,
    R.request_id,
    R.objective,
    R.planner,
    R.planner_version,
    R.bucket,
    R.config_id,
    R.config_version,
    R.config_digest,
    R.context_kind,
    R.context_digest,
    func.length(R.context).label("context_bytes"),
    R.timeout_s,
    R.status,
    R.attempts,
    R.cancel_requested,
    R.created_at,
    R.started_at,
    R.finished_at,
    R.lease_owner,
    R.lease_expires_at,
    R.worker,
    R.error,
)


def columns(*, plan: bool = True, context: bool = False) -> tuple[Any, ...]:
    """What to read of a run: never the context unless asked, the plan unless told not to."""
    return _SUMMARY + ((R.plan,) if plan else ()) + ((R.context,) if context else ())


def stored_run(row: Any) -> StoredRun:
    """A row read with `columns(...)` as a `StoredRun` (payloads it did not read are None)."""
    data = dict(row._mapping)
    data["cancel_requested"] = bool(data["cancel_requested"])
    data["context_bytes"] = int(data["context_bytes"] or 0)
    data["error"] = parse_json_text(data["error"])
    if "plan" in data:
        data["plan"] = parse_json_text(data["plan"])
    if "context" in data:
        data["context"] = decode_context(data["context"])
    return StoredRun(**data)


def _expired(now: datetime) -> ColumnElement[bool]:
    return (R.status == RUNNING) & (R.lease_expires_at < now)


def _candidates(now: datetime) -> Select[str, int, bool]:
    return (
        select(R.run_id, R.attempts, R.cancel_requested)
        .where(_expired(now))
        .order_by(R.lease_expires_at, R.run_id)
        .limit(RECOVER_BATCH)
        .with_for_update(skip_locked=True)
    )


def _recovery(
    attempts: int, cancel_requested: bool, owner: str, max_attempts: int, now: datetime
) -> dict[str, Any]:
    """The new values of one expired run: cancelled, queued again, or interrupted."""
    error: dict[str, Any]
    if cancel_requested:
        error = {
            "error": "RunCancelled",
            "message": "The run was cancelled; its worker or server stopped before it "
            "confirmed the cancellation.",
            "recovered_by": owner,
        }
        return {"status": CANCELLED, "finished_at": now, "error": json_text(error, "error")}
    if attempts < max_attempts:
        return {
            "status": QUEUED,
            "started_at": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "worker": None,
        }
    error = {
        "error": "RunInterrupted",
        "message": f"The run did not finish: its worker or server stopped while it ran; it "
        f"was tried {attempts} time(s), the most allowed is {max_attempts}. Start it again.",
        "attempts": attempts,
        "recovered_by": owner,
    }
    return {"status": INTERRUPTED, "finished_at": now, "error": json_text(error, "error")}


def recover_expired(
    connection: Connection, owner: str, max_attempts: int, now: datetime
) -> list[StoredRun]:
    """Runs `running` whose lease ended before `now`, each queued again (fewer than
    `max_attempts` tries), interrupted (no tries left) or cancelled (cancel was requested)."""
    recovered: list[StoredRun] = []
    for run_id, attempts, cancel_requested in connection.execute(_candidates(now)).all():
        values = _recovery(attempts, bool(cancel_requested), owner, max_attempts, now)
        row = connection.execute(
            update(R)
            .where(R.run_id == run_id, _expired(now))
            .values(**values)
            .returning(*columns(plan=False))
        ).first()
        if row is not None:
            recovered.append(stored_run(row))
    return recovered


def _ranked_beyond(keep: int, per_user: bool) -> Select[Any]:
    """Finished runs beyond the newest `keep` (per user, or in the whole table)."""
    order = (R.created_at.desc(), R.run_id.desc())
    rank = (
        func.row_number().over(partition_by=R.user, order_by=order)
        if per_user
        else func.row_number().over(order_by=order)
    )
    ranked = select(R.run_id, rank.label("rank")).where(R.status.in_(FINISHED_STATUSES)).subquery()
    return select(ranked.c.run_id).where(ranked.c.rank > keep)


def prune_finished(connection: Connection, settings: RunSettings, now: datetime) -> int:
    """Delete finished runs past the age bound, then beyond the per-user and total counts;
    queued and running runs are never touched. The number of runs deleted."""
    finished = R.status.in_(FINISHED_STATUSES)
    cutoff = now - timedelta(days=settings.max_age_days)
    statements: Sequence[Any] = (
        delete(R).where(finished, R.finished_at < cutoff),
        delete(R).where(finished, R.run_id.in_(_ranked_beyond(settings.max_per_user, True))),
        delete(R).where(finished, R.run_id.in_(_ranked_beyond(settings.max_total, False))),
    )
    return sum(int(connection.execute(statement).rowcount) for statement in statements)
