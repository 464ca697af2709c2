"""Runs that were planned elsewhere and are recorded once they have ended (a batch).

A batch plans thousands of portfolios a minute on its own executors; recording each run as
the service does (a `queued` row, then its end: two transactions) would make the database
the bottleneck. `record_finished` writes a group of ended runs in one transaction, each row
complete (context, plan or error, times), checked as `RunStore.create` checks its input. The
rows are ordinary runs: `planforge runs`, the service and the console read them as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import insert, select

from planforge.configstore._inputs import check_optional_text, check_text
from planforge.configstore._models import DIGEST_LENGTH, NAME_LENGTH, RunRow
from planforge.configstore._run_records import COMPLETED, FAILED, encode_context, json_text
from planforge.configstore.errors import InvalidInput, RunContextTooLarge, RunExists
from planforge.ids import id_problem

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions

__all__ = ["FinishedRun", "insert_finished"]


class FinishedRun(NamedTuple):
    """One ended run: `plan` for a completed one, `error` (`{"error", "message"}`) otherwise."""

    run_id: str
    user: str
    objective: str
    context: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    planner: str | None = None
    plan: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    config_digest: str | None = None
    worker: str | None = None


def insert_finished(
    sessions: Sessions, runs: Sequence[FinishedRun], max_context_bytes: int, limit_name: str
) -> int:
    """Write `runs` in one transaction; none is written if any is refused."""
    rows = [_row(run, max_context_bytes, limit_name) for run in runs]
    if not rows:
        return 0
    ids = [row["run_id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise InvalidInput("run_id", "duplicates", "each run needs its own id")
    with sessions.writing("record finished runs") as connection:
        taken = connection.execute(select(RunRow.run_id).where(RunRow.run_id.in_(ids))).first()
        if taken is not None:
            raise RunExists(taken[0])
        connection.execute(insert(RunRow), rows)
    return len(rows)


def _row(run: FinishedRun, max_context_bytes: int, limit_name: str) -> dict[str, Any]:
    for field in ("run_id", "user"):
        problem = id_problem(getattr(run, field))
        if problem is not None:
            raise InvalidInput(field, getattr(run, field), problem)
    if (run.plan is None) == (run.error is None):
        raise InvalidInput("plan", run.run_id, "give a plan or an error, not both or neither")
    blob, digest = encode_context(run.context)
    if len(blob) > max_context_bytes:
        raise RunContextTooLarge(len(blob), max_context_bytes, limit_name)
    objective = check_optional_text("objective", run.objective)
    digest_given = run.config_digest
    if digest_given is not None and not (
        len(digest_given) == DIGEST_LENGTH and all(c in "0123456789abcdef" for c in digest_given)
    ):
        raise InvalidInput("config_digest", digest_given, "must be a sha256 hex digest")
    return {
        "run_id": run.run_id,
        "user": run.user,
        "request_id": None,
        "objective": objective if objective is not None else "",
        "planner": None if run.planner is None else check_text("planner", run.planner, NAME_LENGTH),
        "planner_version": None,
        "bucket": None,
        "config_id": None,
        "config_version": None,
        "config_digest": run.config_digest,
        "context_kind": None,
        "context_digest": digest,
        "context": blob,
        "timeout_s": None,
        "status": COMPLETED if run.plan is not None else FAILED,
        "attempts": 1,
        "cancel_requested": False,
        "created_at": run.started_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "lease_owner": None,
        "lease_expires_at": None,
        "worker": None if run.worker is None else check_text("worker", run.worker, NAME_LENGTH),
        "plan": None if run.plan is None else json_text(run.plan, "plan"),
        "error": None if run.error is None else json_text(run.error, "error"),
    }
