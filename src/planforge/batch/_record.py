"""`--record`: a batch's runs written to the runs table, a group per transaction.

Each result becomes an ended run (`completed` with its plan, `failed` with its error) under
the batch's user, with an id made of the batch's token and the input's position, so the
service, `planforge runs` and the console show batch runs beside the others. Rows are
buffered and written `GROUP` at a time (and every `FLUSH_S` seconds): one transaction per
group instead of two per run. The OUTPUT file is the batch's record; the database is a copy,
so a database that fails stops the recording (said once, and in the summary), never the
batch.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from planforge.batch._plan_many import BatchResult
from planforge.errors import PlannerError
from planforge.logs import get_logger
from planforge.redact import redact_text

if TYPE_CHECKING:
    from planforge.configstore import ConfigStore, FinishedRun

__all__ = ["RunRecorder"]

GROUP: Final = 200
FLUSH_S: Final = 2.0
_log = get_logger("batch.record")


class RunRecorder:
    """Buffers results as runs of `user` and writes them to `store`'s runs table."""

    def __init__(self, store: ConfigStore, objective: str, user: str = "batch") -> None:
        self.store = store
        self.objective = objective
        self.user = user
        self.token = uuid.uuid4().hex[:12]
        self.recorded = 0
        self.problem: str | None = None
        self._rows: list[FinishedRun] = []
        self._flushed = time.monotonic()

    def add(self, result: BatchResult) -> None:
        if self.problem is not None or result.context is None:
            return
        self._rows.append(self._run(result))
        if len(self._rows) >= GROUP or time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def _run(self, result: BatchResult) -> FinishedRun:
        from planforge.configstore import FinishedRun

        record: dict[str, Any] = json.loads(result.line)
        finished = datetime.now(UTC)
        error = record.get("error")
        digest = record.get("config_digest")
        plan = record.get("plan")
        return FinishedRun(
            run_id=f"batch-{self.token}-{result.position}",
            user=self.user,
            objective=str((plan or {}).get("objective", self.objective)),
            context=result.context or {},
            started_at=finished - timedelta(seconds=result.seconds),
            finished_at=finished,
            planner=record.get("planner"),
            plan=plan,
            error=None if error is None else {"error": error["type"], **error},
            config_digest=digest if digest and len(digest) == 64 else None,
            worker=result.worker or None,
        )

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        self._flushed = time.monotonic()
        if not rows or self.problem is not None:
            return
        try:
            self.recorded += self.store.runs.record_finished(rows)
        except PlannerError as exc:
            self.problem = redact_text(exc.message)
            _log.warning("batch runs not recorded", error=self.problem, lost=len(rows))
