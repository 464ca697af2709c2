"""One user's execution engine: one run at a time, reported to that user's event stream."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from planforge.contract import Plan, Run
from planforge.errors import PlanExecutionError, PlannerError, RunStopped
from planforge.logs import get_logger
from planforge.runtime._context import UserExecutionContext
from planforge.runtime._emitter import UserEventEmitter
from planforge.runtime._reporter import RunReporter, plan_summary
from planforge.runtime.errors import (
    EngineBusy,
    EngineClosed,
    RunCancelled,
    RunTimeout,
    WorkerLost,
)

if TYPE_CHECKING:
    from planforge.runtime._engines import ExecutionEngineFactory

__all__ = ["ExecutionEngine", "OutcomeHook", "PlanRequest"]

_engine_ids = itertools.count(1)  # next() on a count is atomic under the GIL
_log = get_logger("runtime.engine")

#: Told a run's plan or error before its last event is sent (see `ExecutionEngine.run`).
OutcomeHook = Callable[[Plan | BaseException], Awaitable[None]]


async def _tell(hook: OutcomeHook | None, outcome: Plan | BaseException) -> None:
    if hook is None:
        return
    try:
        await hook(outcome)
    except Exception as exc:  # the run's outcome stands; the hook's owner logs its own
        _log.error("run outcome hook failed", error=type(exc).__name__, message=str(exc)[:500])


class PlanRequest(NamedTuple):
    """What one run was asked to plan, as `ExecutionEngine.run` received it."""

    objective: str
    context: Mapping[str, Any] | None
    planner: str | None
    bucket: str | None
    context_kind: str | None
    admitted: bool


class ExecutionEngine:
    """Runs plans for one user execution context and reports them to that user only.

    Made by `ExecutionEngineFactory.create_for_user`; one run at a time (every event of a run
    carries the context's run id). Several runs in sequence share the run id and continue its
    sequence numbers.
    """

    __slots__ = (
        "_cancelled",
        "_closed",
        "_owner",
        "_run",
        "_running",
        "_timeout",
        "context",
        "created_at",
        "details",
        "emitter",
        "engine_id",
        "last_active",
    )

    def __init__(
        self,
        owner: ExecutionEngineFactory,
        context: UserExecutionContext,
        emitter: UserEventEmitter,
        now: float,
    ) -> None:
        self._owner = owner
        self.context = context
        self.emitter = emitter
        self.engine_id = next(_engine_ids)
        self.created_at = now  # the owner's clock (monotonic seconds)
        self.last_active = now
        self._running = False
        self._closed = False
        self._run: Run | None = None
        self._timeout = 0.0
        self._cancelled: str | None = None
        #: What the last run was started with: planner, version, bucket configuration.
        self.details: dict[str, Any] = {}

    @property
    def user_id(self) -> str:
        return self.context.user_id

    @property
    def run_id(self) -> str:
        return self.context.run_id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> bool:
        return self._running

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return (
            f"ExecutionEngine(id={self.engine_id}, user={self.context.user_id!r}, "
            f"run={self.context.run_id!r}, {state})"
        )

    # The public call of a run: its keyword arguments and the docstring that states its whole
    # contract are most of its length; the work itself is split into the helpers below.
    async def run(
        self,
        objective: str,
        context: Mapping[str, Any] | None = None,
        *,
        planner: str | None = None,
        bucket: str | None = None,
        timeout_s: float | None = None,
        context_kind: str | None = None,
        admitted: bool = False,
        on_outcome: OutcomeHook | None = None,
    ) -> Plan:
        """Plan `objective`: by factory selection, with `planner`, or with `bucket`'s active
        configuration (run by `planner`, default the store's `BUCKET_PLANNER`).

        `admitted=True`: the caller already ran `admit_context` on this very context and
        passes the kind it decided as `context_kind` (the service admits before it answers
        202), so it is not validated again. Otherwise it is admitted first: a bad one raises
        `InvalidContext` before any planner is admitted. Raises `RunTimeout`,
        `PlanExecutionError` (the planner failed; recorded in the factory's reliability),
        `InvalidContext` (the caller's input; never recorded against the planner), or the
        selection error; each also ends the run's events with `agent_error`. A run-aware
        planner gets a `Run` whose deadline is the timeout (cancelled at the timeout too).

        `on_outcome(plan_or_error)` is awaited before the run's last event is sent, so a
        client that saw the event finds the outcome wherever the hook put it (the service's
        runs table). Its own failure is logged and never changes the run's outcome.
        """
        timeout = self._timeout = self._check_run(objective, timeout_s)
        owner = self._owner
        self._running = True
        self.last_active = owner.clock()
        owner.metrics_store.run_started()
        reporter = RunReporter(self.emitter)
        run = Run(self.context.run_id, timeout_s=timeout, sink=reporter.on_run_event)
        self._run = run
        if self._cancelled is not None:
            run.cancel(self._cancelled)
        request = PlanRequest(objective, context, planner, bucket, context_kind, admitted)
        release = True  # False while a timed-out run's thread is still working
        started = time.perf_counter()
        try:
            plan = await asyncio.wait_for(
                asyncio.to_thread(self._work, reporter, run, request), timeout
            )
        except (TimeoutError, RunStopped):  # RunStopped: the planner saw the deadline first
            release, stop = await self._stopped(reporter, run, planner, started, on_outcome)
            raise stop from None
        except asyncio.CancelledError:
            run.cancel(f"run {self.context.run_id} was cancelled")
            self._failed(reporter, planner, f"run {self.context.run_id} was cancelled", started)
            raise
        except Exception as exc:
            await _tell(on_outcome, exc)
            self._failed(reporter, planner, exc, started)
            raise
        finally:
            if release:
                self._running = False
            self.last_active = owner.clock()
        elapsed = time.perf_counter() - started
        name = reporter.planner_name or plan.planner.name
        owner.record_outcome(name, reporter.plan_duration_s or 0.0, ok=True)
        await _tell(on_outcome, plan)
        reporter.completed(plan_summary(plan, name), elapsed * 1e3)
        owner.metrics_store.run_finished(elapsed * 1e3, outcome="ok")
        return plan

    async def _stopped(
        self,
        reporter: RunReporter,
        run: Run,
        planner: str | None,
        started: float,
        on_outcome: OutcomeHook | None,
    ) -> tuple[bool, RunCancelled | RunTimeout]:
        """A run stopped by its deadline or a cancel: whether the engine is free again (its
        thread has returned), and the error that ends the run, already reported."""
        timeout = self._timeout
        run.cancel(f"it timed out after {timeout:g} s")
        release = not reporter.abandon()
        stop: RunCancelled | RunTimeout
        if self._cancelled is not None:
            stop = RunCancelled(self.context.run_id, self._cancelled)
        else:
            stop = RunTimeout(self.context.run_id, reporter.planner_name, timeout)
        await _tell(on_outcome, stop)
        if isinstance(stop, RunCancelled):
            self._failed(reporter, planner, stop, started)
        else:
            self._timed_out(reporter, planner, stop, started)
        return release, stop

    def cancel(self, reason: str = "cancelled by its owner") -> None:
        """Stop the run (from any thread): the executor stops the work, and the run ends with
        `RunCancelled`. A planner running inline stops at its next `run.check()`."""
        self._cancelled = reason
        run = self._run
        if run is not None:
            run.cancel(reason)

    def _check_run(self, objective: str, timeout_s: float | None) -> float:
        """The run's timeout, after refusing a closed or busy engine and bad arguments."""
        if self._closed:
            raise EngineClosed(self.context.run_id)
        if self._running:
            raise EngineBusy(self.context.run_id)
        timeout = self._owner.settings.run_timeout_s if timeout_s is None else timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise PlannerError(
                f"timeout_s must be a positive number of seconds, got {timeout_s!r}.",
                where="runtime",
            )
        if not isinstance(objective, str) or not objective.strip():
            raise PlannerError(
                "An objective must be a non-empty string saying what to plan.", where="runtime"
            )
        return float(timeout)

    def _timed_out(
        self, reporter: RunReporter, planner: str | None, error: RunTimeout, started: float
    ) -> None:
        owner = self._owner
        elapsed = time.perf_counter() - started
        timeout = error.timeout_s
        if reporter.planner_name is not None and reporter.planning_started is not None:
            owner.record_outcome(
                reporter.planner_name,
                time.perf_counter() - reporter.planning_started,
                ok=False,
                error=f"timed out after {timeout:g} s",
            )
        reporter.failed(reporter.planner_name or planner or "planforge", error, elapsed * 1e3)
        owner.metrics_store.run_finished(elapsed * 1e3, outcome="timeout")

    def _failed(
        self,
        reporter: RunReporter,
        planner: str | None,
        error: BaseException | str,
        started: float,
    ) -> None:
        """The run failed; a planner's own failure is recorded in the factory's reliability."""
        elapsed = time.perf_counter() - started
        if (
            isinstance(error, PlanExecutionError | WorkerLost)
            and reporter.planner_name is not None
            and reporter.plan_duration_s is not None
        ):
            self._owner.record_outcome(
                reporter.planner_name, reporter.plan_duration_s, ok=False, error=error.cause
            )
        reporter.failed(reporter.planner_name or planner or "planforge", error, elapsed * 1e3)
        self._owner.metrics_store.run_finished(elapsed * 1e3, outcome="failed")

    def _work(self, reporter: RunReporter, run: Run, request: PlanRequest) -> Plan:
        """The planning thread. After a timeout the engine stays busy until this returns,
        so a new run can never share the run id with a thread still reporting on it."""
        try:
            return self._owner._execute(self, reporter, run, request)
        finally:
            if reporter.thread_done():
                self._running = False
                self.last_active = self._owner.clock()

    def _close(self) -> None:
        self._closed = True
