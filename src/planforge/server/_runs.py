"""A bounded, per-user record of the plan runs started through the service.

A run is visible to its owner only: every read takes the user, and a run of another user is
indistinguishable from one that does not exist. Memory is bounded twice: each user keeps at
most `max_runs_per_user` runs (the oldest finished ones go first) and at most `max_users`
users are kept (the least recently active go first, with their runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["COMPLETED", "FAILED", "RUNNING", "RunRecord", "RunRegistry"]

RunStatus = Literal["running", "completed", "failed"]
RUNNING: Final[RunStatus] = "running"
COMPLETED: Final[RunStatus] = "completed"
FAILED: Final[RunStatus] = "failed"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the registry last saw it; frozen so a reader's copy never changes."""

    run_id: str
    user: str
    objective: str
    planner: str | None
    bucket: str | None
    status: RunStatus
    created_at: float
    finished_at: float | None = None
    plan: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_dict(self, *, with_plan: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "user": self.user,
            "objective": self.objective,
            "planner": self.planner,
            "bucket": self.bucket,
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }
        if with_plan:
            data["plan"] = self.plan
        return data


class RunRegistry:
    """Runs by user, newest last; thread-safe (the lock is held for dictionary work only)."""

    def __init__(
        self,
        max_runs_per_user: int = 100,
        max_users: int = 10_000,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("max_runs_per_user", max_runs_per_user), ("max_users", max_users)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        self.max_runs_per_user = max_runs_per_user
        self.max_users = max_users
        self._clock = clock
        self._lock = threading.Lock()
        self._users: OrderedDict[str, OrderedDict[str, RunRecord]] = OrderedDict()
        # Background tasks of running plans: a reference keeps them from being collected.
        # The engine factory's per-user limit bounds how many run at once.
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        user: str,
        run_id: str,
        objective: str,
        *,
        planner: str | None = None,
        bucket: str | None = None,
    ) -> RunRecord:
        """Record a new running run, dropping the user's oldest runs beyond the limit."""
        record = RunRecord(
            run_id=run_id,
            user=user,
            objective=objective,
            planner=planner,
            bucket=bucket,
            status=RUNNING,
            created_at=self._clock(),
        )
        with self._lock:
            runs = self._users.get(user)
            if runs is None:
                while len(self._users) >= self.max_users:
                    self._users.popitem(last=False)
                runs = self._users[user] = OrderedDict()
            else:
                self._users.move_to_end(user)
            runs[run_id] = record
            while len(runs) > self.max_runs_per_user:
                runs.pop(self._oldest_droppable(runs))
        return record

    @staticmethod
    def _oldest_droppable(runs: OrderedDict[str, RunRecord]) -> str:
        """The oldest finished run, or the oldest run when every one is still running."""
        for run_id, record in runs.items():
            if record.status != RUNNING:
                return run_id
        return next(iter(runs))

    def complete(self, user: str, run_id: str, plan: dict[str, Any]) -> RunRecord | None:
        """Mark a run completed with its plan; None if it was dropped meanwhile."""
        return self._finish(user, run_id, status=COMPLETED, plan=plan)

    def fail(
        self, user: str, run_id: str, error: str, message: str, *, input_error: bool = False
    ) -> RunRecord | None:
        """Mark a run failed with the error's class name and message; `input_error` says the
        caller's input was at fault (a context its planner could not read), not the planner."""
        return self._finish(
            user,
            run_id,
            status=FAILED,
            error={"error": error, "message": message, "input_error": input_error},
        )

    def _finish(self, user: str, run_id: str, **changes: Any) -> RunRecord | None:
        with self._lock:
            runs = self._users.get(user)
            record = None if runs is None else runs.get(run_id)
            if runs is None or record is None:
                return None
            finished = dataclasses.replace(record, finished_at=self._clock(), **changes)
            runs[run_id] = finished
            return finished

    def get(self, user: str, run_id: str) -> RunRecord | None:
        """`user`'s run `run_id`, or None (also when the run belongs to someone else)."""
        with self._lock:
            runs = self._users.get(user)
            return None if runs is None else runs.get(run_id)

    def list(self, user: str) -> list[RunRecord]:
        """`user`'s runs, newest first."""
        with self._lock:
            runs = self._users.get(user)
            return [] if runs is None else list(reversed(runs.values()))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a run's task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running_tasks(self) -> int:
        return len(self._tasks)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(runs) for runs in self._users.values())
