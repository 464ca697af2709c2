"""A run as an executor receives it, and the one place a planner is built and called for it.

The engine decides what it can from metadata in the server's process (the planner's name,
its admission, the configuration) and hands a `RunJob` to an executor. Whichever process the
executor chose then calls `JobRunner.run`: only there is a plugin planner's module imported.
A job, its outcome and its failure are plain picklable data, so they cross a pipe or a Ray
object store unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from planforge.contract import (
    CONFIG_CONTEXT_KEY,
    EXPLAIN_CONTEXT_KEY,
    Plan,
    Planner,
    Run,
    accepts_run,
    plan_with,
)
from planforge.errors import InvalidContext, PlanExecutionError, PlannerError, RunStopped
from planforge.factory import PlannerFactory

__all__ = ["STAGES", "JobFailure", "JobOutcome", "JobRunner", "RunJob"]

#: Where a job failed, which decides how the outcome counts for the planner:
#: load (never planned: admission released), input (the caller's context: released as an
#: input error), stopped (deadline or cancel), plan (plan() failed), lost (its worker died).
STAGES: Final = ("load", "input", "stopped", "plan", "lost")
_TEXT_LIMIT: Final = 2000


@dataclass(frozen=True, slots=True)
class RunJob:
    """Everything a worker needs to plan one run; `config` is the run's chosen configuration."""

    run_id: str
    user_id: str
    planner: str
    objective: str
    context: dict[str, Any]
    config: Any = None
    timeout_s: float | None = None
    attempt: int = 1
    #: Work other than `plan()` that must not run in the server either (an A/B comparison):
    #: a module-level function, called as `task(factory, objective, context, config)` in
    #: the worker; its picklable return value is the outcome's `value`.
    task: Callable[[PlannerFactory, str, dict[str, Any], Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A planned job: the plan (None for a task job, whose result is `value`), how long the
    work took, and which worker ran it."""

    plan: Plan | None
    duration_s: float
    worker: str
    value: Any = None


class JobFailure(Exception):
    """A job that failed at `stage` (see `STAGES`); `error` is what the run's caller sees.

    `duration_s` is how long the planner worked (None: it never started).
    """

    def __init__(
        self,
        error: PlannerError,
        stage: str,
        duration_s: float | None = None,
        worker: str = "",
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.stage = stage
        self.duration_s = duration_s
        self.worker = worker

    def to_wire(self) -> dict[str, Any]:
        """Plain data for a pipe; `from_wire` rebuilds the same error on the other side."""
        error = self.error
        data: dict[str, Any] = {
            "type": type(error).__name__,
            "message": error.message[:_TEXT_LIMIT],
            "stage": self.stage,
            "duration_s": self.duration_s,
            "worker": self.worker,
        }
        if isinstance(error, InvalidContext):
            data.update(field=error.field, problem=error.problem, kind=error.kind)
            data["source"] = error.source
        elif isinstance(error, PlanExecutionError):
            data.update(planner=error.planner_name, cause=error.cause[:_TEXT_LIMIT])
        elif isinstance(error, RunStopped):
            data.update(run_id=error.run_id, reason=error.reason)
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobFailure:
        kind = data.get("type")
        error: PlannerError
        if kind == "InvalidContext":
            error = InvalidContext(
                data["field"], data["problem"], kind=data.get("kind"), source=data["source"]
            )
        elif kind == "PlanExecutionError":
            error = PlanExecutionError(data["planner"], data["cause"])
        elif kind == "RunStopped":
            error = RunStopped(data["run_id"], data["reason"])
        else:
            error = PlannerError(str(data.get("message", "")), where="worker")
            error.context["error_type"] = kind
        return cls(error, str(data["stage"]), data.get("duration_s"), str(data.get("worker", "")))


@dataclass
class JobRunner:
    """Builds planners and plans jobs in one process: the server's (inline) or a worker's.

    Stateless planners are the factory's shared instance; a stateful one gets an instance per
    user, the `max_stateful` most recently used kept.
    """

    factory: PlannerFactory
    worker: str = "inline"
    max_stateful: int = 100_000
    _stateful: OrderedDict[tuple[str, str], Planner] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, job: RunJob, run: Run) -> JobOutcome:
        """Plan `job` with `run` (its sink, deadline and configuration); raises `JobFailure`."""
        if job.task is not None:
            return self._task(job)
        try:
            instance = self.instance(job.user_id, job.planner)
        except PlannerError as exc:
            raise JobFailure(exc, "load", worker=self.worker) from exc
        context = dict(job.context)
        explain = context.pop(EXPLAIN_CONTEXT_KEY, None) is True  # never the planner's input
        if accepts_run(instance):
            chosen = context.pop(CONFIG_CONTEXT_KEY, None)  # the user's choice, lifted
            if run.config is None:
                run.config = chosen
            run.explain = run.explain or explain
        started = time.perf_counter()
        try:
            plan = plan_with(instance, job.objective, context, run)
            if not isinstance(plan, Plan):
                raise TypeError(f"plan() returned {type(plan).__name__}, not a Plan")
        except RunStopped as exc:
            raise JobFailure(exc, "stopped", _since(started), self.worker) from exc
        except InvalidContext as exc:
            raise JobFailure(exc, "input", _since(started), self.worker) from exc
        except Exception as exc:
            error = PlanExecutionError(job.planner, f"{type(exc).__name__}: {exc}")
            raise JobFailure(error, "plan", _since(started), self.worker) from exc
        return JobOutcome(plan, _since(started), self.worker)

    def _task(self, job: RunJob) -> JobOutcome:
        assert job.task is not None
        started = time.perf_counter()
        try:
            value = job.task(self.factory, job.objective, job.context, job.config)
        except PlannerError as exc:  # the caller's input or the planner's refusal, as raised
            raise JobFailure(exc, "plan", _since(started), self.worker) from exc
        except Exception as exc:
            error = PlanExecutionError(job.planner, f"{type(exc).__name__}: {exc}")
            raise JobFailure(error, "plan", _since(started), self.worker) from exc
        return JobOutcome(None, _since(started), self.worker, value)

    def instance(self, user_id: str, name: str) -> Planner:
        shared = self.factory.get_planner(name)
        if not type(shared).stateful:
            return shared
        key = (user_id, name)
        with self._lock:
            instance = self._stateful.get(key)
            if instance is not None:
                self._stateful.move_to_end(key)
                return instance
        built = self.factory.new_planner(name)
        with self._lock:
            instance = self._stateful.setdefault(key, built)
            self._stateful.move_to_end(key)
            while len(self._stateful) > self.max_stateful:
                self._stateful.popitem(last=False)
        return instance

    def stateful_instances(self) -> int:
        with self._lock:
            return len(self._stateful)


def _since(started: float) -> float:
    return time.perf_counter() - started
