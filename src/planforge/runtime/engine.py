"""Per-user execution engines: one engine per user execution context, one run at a time.

`ExecutionEngineFactory` hands out engines under a per-user limit on live engines and
reclaims them: explicitly (`cleanup`, idempotent), through `user_execution_scope` (always),
or through the background reaper (idle or too old). `ExecutionEngine.run` picks a planner
(by objective, by name, or a bucket's active configuration), plans off the event loop under
a timeout, and reports the run to the user's event stream.

Defects of the original runtime this avoids, each by construction:
- engine keys made of user, run and a millisecond timestamp collided: engines are keyed by a
  process-wide counter;
- an engine could be cleaned twice: cleanup removes the engine from its shard under the
  shard's lock, and only the caller that removed it does the rest;
- the limit counted only "active" engines and per-user semaphores were held weakly: a plain
  per-user integer counts every live engine and is dropped only when it reaches zero;
- one global lock serialised creation: users are spread over sharded locks held for a few
  dictionary operations; the only shared lock is taken when a user's first engine appears
  or its last one goes (the bound on how many users hold state);
- a failed delivery aborted the run: the emitter counts and logs it, the run goes on;
- metrics were randomly sampled: every creation, run and cleanup is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from planforge.contract import Plan, Planner
from planforge.errors import InvalidContext, PlanExecutionError, PlannerError
from planforge.factory.core import PlannerFactory
from planforge.holistic.events import (
    EVALUATION_PROGRESS,
    MODULE_COMPLETED,
    MODULE_FAILED,
    MODULE_STARTED,
    EngineEvent,
    EventHub,
)
from planforge.logs import get_logger
from planforge.runtime.bus import EventBus
from planforge.runtime.context import UserExecutionContext
from planforge.runtime.emitter import UserEventEmitter
from planforge.runtime.metrics import RuntimeMetrics
from planforge.runtime.settings import RuntimeSettings, load_runtime_settings

__all__ = [
    "BUCKET_PLANNER",
    "EngineBusy",
    "EngineClosed",
    "ExecutionEngine",
    "ExecutionEngineFactory",
    "RunLimitExceeded",
    "RunTimeout",
    "UserCapacityExceeded",
]

#: The planner a bucket's configuration is run with unless `planner=` names another.
BUCKET_PLANNER = "holistic"
_SHARDS = 64  # a power of two: the shard is crc32(user) & (_SHARDS - 1)
_SIGNATURE_CACHE = 256
_ERROR_TEXT_LIMIT = 500
_log = get_logger("runtime.engine")
_engine_ids = itertools.count(1)  # next() on a count is atomic under the GIL


class RunLimitExceeded(PlannerError):
    """A user already holds as many live engines as PLANFORGE_MAX_RUNS_PER_USER allows."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(
            f"User {user_id!r} already has {limit} live execution engine(s), the limit "
            f"(PLANFORGE_MAX_RUNS_PER_USER={limit}). Wait for a run to finish or clean an "
            "engine up before starting another.",
            where="runtime",
            context={"user_id": user_id, "limit": limit},
        )
        self.user_id = user_id
        self.limit = limit


class UserCapacityExceeded(PlannerError):
    """As many distinct users hold engines as PLANFORGE_MAX_USERS allows."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(
            f"Cannot start an engine for user {user_id!r}: {limit} users already have live "
            f"engines (PLANFORGE_MAX_USERS={limit}). Retry when runs finish, or raise "
            "PLANFORGE_MAX_USERS.",
            where="runtime",
            context={"user_id": user_id, "limit": limit},
        )
        self.user_id = user_id
        self.limit = limit


class RunTimeout(PlannerError):
    """A run did not finish within its timeout; its thread is abandoned, not killed."""

    def __init__(self, run_id: str, planner_name: str | None, timeout_s: float) -> None:
        who = f"planner {planner_name!r}" if planner_name else "planner selection"
        super().__init__(
            f"Run {run_id} timed out: {who} did not finish within {timeout_s:g} s. "
            "Pass a larger timeout_s or raise PLANFORGE_RUN_TIMEOUT_S.",
            where="runtime",
            context={"run_id": run_id, "planner_name": planner_name, "timeout_s": timeout_s},
        )
        self.run_id = run_id
        self.planner_name = planner_name
        self.timeout_s = timeout_s


class EngineClosed(PlannerError):
    """The engine was cleaned up (explicitly, by its scope or by the reaper)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"The execution engine of run {run_id} is cleaned up and cannot run again. "
            "Create a new one with ExecutionEngineFactory.create_for_user().",
            where="runtime",
            context={"run_id": run_id},
        )
        self.run_id = run_id


class EngineBusy(PlannerError):
    """An engine runs one plan at a time: its events carry a single run id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"The execution engine of run {run_id} is already running a plan (or a timed-out "
            "run's thread has not returned yet). Use one engine per concurrent run "
            "(create_for_user(context.child())).",
            where="runtime",
            context={"run_id": run_id},
        )
        self.run_id = run_id


# ---------------------------------------------------------------------- holistic bridge

_accepts_run_id_cache: dict[type[Any], bool] = {}
_accepts_run_id_lock = threading.Lock()


def _accepts_run_id(cls: type[Any]) -> bool:
    """Whether `cls.run(objective, context, *, run_id=...)` exists (the holistic planner's)."""
    known = _accepts_run_id_cache.get(cls)
    if known is not None:
        return known
    run = getattr(cls, "run", None)
    accepts = False
    if callable(run):
        try:
            parameters = inspect.signature(run).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        accepts = "run_id" in parameters
    with _accepts_run_id_lock:
        if len(_accepts_run_id_cache) >= _SIGNATURE_CACHE:
            _accepts_run_id_cache.clear()
        _accepts_run_id_cache[cls] = accepts
    return accepts


def _bridgeable_hub(instance: Planner) -> EventHub | None:
    hub = getattr(instance, "events", None)
    if isinstance(hub, EventHub) and _accepts_run_id(type(instance)):
        return hub
    return None


class _HubRouter:
    """One subscription per hub, dispatching each event to the runs waiting for its run id.

    With one subscriber per run, a shared planner running for 200 users would call 200
    callbacks per event; routing by run id keeps it at one dictionary lookup.
    """

    __slots__ = ("__weakref__", "_lock", "_routes")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[Callable[[EngineEvent], None], ...]] = {}

    def add(self, run_id: str, callback: Callable[[EngineEvent], None]) -> None:
        with self._lock:
            self._routes[run_id] = (*self._routes.get(run_id, ()), callback)

    def remove(self, run_id: str, callback: Callable[[EngineEvent], None]) -> None:
        with self._lock:
            remaining = tuple(cb for cb in self._routes.get(run_id, ()) if cb is not callback)
            if remaining:
                self._routes[run_id] = remaining
            else:
                self._routes.pop(run_id, None)

    def dispatch(self, event: EngineEvent) -> None:
        for callback in self._routes.get(event.run_id, ()):
            callback(event)

    def __len__(self) -> int:
        return len(self._routes)


class _RunReporter:
    """Turns one run's progress into the user's events; silent once the run has ended.

    The terminal event (completed or error) is sent under the same lock that closes the
    reporter, so an abandoned planner thread that reports late can never send an event
    after it. Bridged holistic events are translated here.
    """

    __slots__ = (
        "_abandoned",
        "_emitter",
        "_lock",
        "_open",
        "_step",
        "_thread_done",
        "late_events",
        "plan_duration_s",
        "planner_name",
        "planning_started",
    )

    def __init__(self, emitter: UserEventEmitter) -> None:
        self._emitter = emitter
        self._lock = threading.Lock()
        self._open = True
        self._step = 0
        self._abandoned = False
        self._thread_done = False
        self.late_events = 0
        self.planner_name: str | None = None
        self.planning_started: float | None = None  # perf_counter when plan() was called
        self.plan_duration_s: float | None = None

    def abandon(self) -> bool:
        """The run timed out: True if its thread is still working (it will say when done)."""
        with self._lock:
            self._abandoned = True
            return not self._thread_done

    def thread_done(self) -> bool:
        """The planning thread ended: True if the run was abandoned before that."""
        with self._lock:
            self._thread_done = True
            return self._abandoned

    def started(self, name: str, details: dict[str, Any]) -> None:
        with self._lock:
            if self._open:
                self._emitter.agent_started(name, details)
            else:
                self.late_events += 1

    def thinking(self, reasoning: str, progress: float) -> None:
        with self._lock:
            if not self._open:
                self.late_events += 1
                return
            self._step += 1
            self._emitter.agent_thinking(
                self.planner_name or "planforge", reasoning, self._step, progress
            )

    def on_engine_event(self, event: EngineEvent) -> None:
        """Holistic engine event -> user event (called on the planning thread)."""
        payload = event.payload
        kind = event.type
        with self._lock:
            if not self._open:
                self.late_events += 1
                return
            if kind == MODULE_STARTED:
                self._emitter.tool_executing(
                    str(payload.get("module", "")),
                    {"operation": payload.get("operation")},
                )
            elif kind == MODULE_COMPLETED:
                self._emitter.tool_completed(
                    str(payload.get("module", "")),
                    {
                        "ok": True,
                        "operation": payload.get("operation"),
                        "slow": bool(payload.get("slow", False)),
                    },
                    float(payload.get("duration_ms", 0.0)),
                )
            elif kind == MODULE_FAILED:
                self._emitter.tool_completed(
                    str(payload.get("module", "")),
                    {
                        "ok": False,
                        "operation": payload.get("operation"),
                        "error": payload.get("error"),
                        "error_type": payload.get("error_type"),
                    },
                    float(payload.get("duration_ms", 0.0)),
                )
            elif kind == EVALUATION_PROGRESS:
                total = int(payload.get("total", 0))
                done = int(payload.get("done", 0))
                progress = round(100.0 * done / total, 2) if total else 100.0
                self._step += 1
                self._emitter.agent_thinking(
                    self.planner_name or "planforge",
                    f"evaluated {done} of {total} candidate sequences",
                    self._step,
                    progress,
                )

    def completed(self, result: dict[str, Any], elapsed_ms: float) -> None:
        with self._lock:
            self._open = False
            self._emitter.agent_completed(self.planner_name or "planforge", result, elapsed_ms)

    def failed(self, agent_name: str, error: BaseException | str, elapsed_ms: float) -> None:
        with self._lock:
            self._open = False
            self._emitter.agent_error(agent_name, error, elapsed_ms)


def _plan_summary(plan: Plan, planner_name: str) -> dict[str, Any]:
    improvement = plan.metrics.get("improvement")
    return {
        "plan_id": plan.plan_id,
        "planner": planner_name,
        "steps": len(plan.steps),
        "score": plan.score,
        "improvement": improvement,
        "warnings": len(plan.warnings),
    }


# ---------------------------------------------------------------------- engine


class ExecutionEngine:
    """Runs plans for one user execution context and reports them to that user only.

    Made by `ExecutionEngineFactory.create_for_user`; one run at a time (every event of a run
    carries the context's run id). Several runs in sequence share the run id and continue its
    sequence numbers.
    """

    __slots__ = (
        "_closed",
        "_owner",
        "_running",
        "context",
        "created_at",
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
    ) -> Plan:
        """Plan `objective`: by factory selection, with `planner`, or with `bucket`'s active
        configuration (run by `planner`, default the holistic planner).

        `admitted=True` says the caller already ran `admit_context` on this very context and
        passes the kind it decided as `context_kind` (the service admits before it answers
        202): the context is then not validated a second time.

        The context is admitted first (`ExecutionEngineFactory.admit_context`): a bad one
        raises `InvalidContext` before any planner is admitted. Raises `RunTimeout`,
        `PlanExecutionError` (the planner failed; recorded in the factory's reliability),
        `InvalidContext` (the caller's input; never recorded against the planner), or the
        selection error; each also ends the run's events with `agent_error`.
        """
        if self._closed:
            raise EngineClosed(self.context.run_id)
        if self._running:
            raise EngineBusy(self.context.run_id)
        owner = self._owner
        timeout = owner.settings.run_timeout_s if timeout_s is None else timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise PlannerError(
                f"timeout_s must be a positive number of seconds, got {timeout_s!r}.",
                where="runtime",
            )
        if not isinstance(objective, str) or not objective.strip():
            raise PlannerError(
                "An objective must be a non-empty string saying what to plan.", where="runtime"
            )
        self._running = True
        self.last_active = owner.clock()
        owner.metrics_store.run_started()
        reporter = _RunReporter(self.emitter)
        release = True  # False while a timed-out run's thread is still working
        started = time.perf_counter()
        try:
            plan = await asyncio.wait_for(
                asyncio.to_thread(
                    self._work,
                    reporter,
                    objective,
                    context,
                    planner,
                    bucket,
                    (context_kind, admitted),
                ),
                timeout,
            )
        except TimeoutError:
            release = not reporter.abandon()
            elapsed = time.perf_counter() - started
            error = RunTimeout(self.context.run_id, reporter.planner_name, float(timeout))
            if reporter.planner_name is not None and reporter.planning_started is not None:
                owner.record_outcome(
                    reporter.planner_name,
                    time.perf_counter() - reporter.planning_started,
                    ok=False,
                    error=f"timed out after {timeout:g} s",
                )
            reporter.failed(reporter.planner_name or planner or "planforge", error, elapsed * 1e3)
            owner.metrics_store.run_finished(elapsed * 1e3, outcome="timeout")
            raise error from None
        except asyncio.CancelledError:
            elapsed = time.perf_counter() - started
            reporter.failed(
                reporter.planner_name or planner or "planforge",
                f"run {self.context.run_id} was cancelled",
                elapsed * 1e3,
            )
            owner.metrics_store.run_finished(elapsed * 1e3, outcome="failed")
            raise
        except Exception as exc:
            elapsed = time.perf_counter() - started
            if (
                isinstance(exc, PlanExecutionError)
                and reporter.planner_name is not None
                and reporter.plan_duration_s is not None
            ):
                owner.record_outcome(
                    reporter.planner_name, reporter.plan_duration_s, ok=False, error=exc.cause
                )
            reporter.failed(reporter.planner_name or planner or "planforge", exc, elapsed * 1e3)
            owner.metrics_store.run_finished(elapsed * 1e3, outcome="failed")
            raise
        finally:
            if release:
                self._running = False
            self.last_active = owner.clock()
        elapsed = time.perf_counter() - started
        name = reporter.planner_name or plan.planner.name
        owner.record_outcome(name, reporter.plan_duration_s or 0.0, ok=True)
        reporter.completed(_plan_summary(plan, name), elapsed * 1e3)
        owner.metrics_store.run_finished(elapsed * 1e3, outcome="ok")
        return plan

    def _work(
        self,
        reporter: _RunReporter,
        objective: str,
        context: Mapping[str, Any] | None,
        planner: str | None,
        bucket: str | None,
        kind: tuple[str | None, bool],
    ) -> Plan:
        """The planning thread. After a timeout the engine stays busy until this returns,
        so a new run can never share the run id with a thread still reporting on it."""
        try:
            return self._owner._execute(self, reporter, objective, context, planner, bucket, kind)
        finally:
            if reporter.thread_done():
                self._running = False
                self.last_active = self._owner.clock()

    def _close(self) -> None:
        self._closed = True


# ---------------------------------------------------------------------- factory


class _Shard:
    """Live engines and per-user counts of the users whose id falls into this shard."""

    __slots__ = ("counts", "engines", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.engines: dict[int, ExecutionEngine] = {}


class ExecutionEngineFactory:
    """Creates per-user engines under the per-user limit and reclaims them.

    `store` (a `ConfigStore`) is needed only for runs by bucket. `clock` gives monotonic
    seconds for engine age and idleness (inject one in tests); durations use
    `time.perf_counter`.
    """

    def __init__(
        self,
        factory: PlannerFactory,
        *,
        bus: EventBus,
        store: Any | None = None,
        settings: RuntimeSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.bus = bus
        self.store = store
        self.settings = settings if settings is not None else load_runtime_settings()
        self.clock = clock
        self.metrics_store = RuntimeMetrics()
        self._shards = tuple(_Shard() for _ in range(_SHARDS))
        self._users = 0
        self._users_lock = threading.Lock()
        self._stateful: OrderedDict[tuple[str, str], Planner] = OrderedDict()
        self._stateful_lock = threading.Lock()
        self._routers: weakref.WeakKeyDictionary[EventHub, _HubRouter] = weakref.WeakKeyDictionary()
        self._routers_lock = threading.Lock()
        self._bucket_cache: Any | None = None
        self._bucket_lock = threading.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- creation and cleanup ----------------------------------------------------------

    def _shard(self, user_id: str) -> _Shard:
        return self._shards[zlib.crc32(user_id.encode()) & (_SHARDS - 1)]

    def create_for_user(self, context: UserExecutionContext) -> ExecutionEngine:
        """A new engine for `context`; `RunLimitExceeded` when the user is at the limit."""
        started = time.perf_counter()
        if self._closed:
            raise PlannerError(
                "This ExecutionEngineFactory is closed; make a new one.", where="runtime"
            )
        try:
            user_id = context.user_id
            emitter = UserEventEmitter(context, self.bus)
            engine = ExecutionEngine(self, context, emitter, self.clock())
        except Exception:
            self.metrics_store.creation_failed()
            raise
        limit = self.settings.max_runs_per_user
        shard = self._shard(user_id)
        rejected: PlannerError | None = None
        with shard.lock:
            count = shard.counts.get(user_id, 0)
            if count >= limit:
                rejected = RunLimitExceeded(user_id, limit)
            elif count == 0 and not self._admit_user():
                rejected = UserCapacityExceeded(user_id, self.settings.max_users)
            else:
                shard.counts[user_id] = count + 1
                shard.engines[engine.engine_id] = engine
        if rejected is not None:
            if isinstance(rejected, RunLimitExceeded):
                self.metrics_store.limit_rejected()
            else:
                self.metrics_store.capacity_rejected()
            raise rejected
        self.metrics_store.engine_created((time.perf_counter() - started) * 1e3)
        return engine

    def _admit_user(self) -> bool:
        with self._users_lock:
            if self._users >= self.settings.max_users:
                return False
            self._users += 1
            return True

    def cleanup(self, engine: ExecutionEngine, *, _reason: str | None = None) -> bool:
        """Release the engine's slot; True the first time, False ever after (idempotent)."""
        started = time.perf_counter()
        if engine._owner is not self:
            return False
        user_id = engine.context.user_id
        shard = self._shard(user_id)
        with shard.lock:
            if shard.engines.pop(engine.engine_id, None) is None:
                return False
            remaining = shard.counts.get(user_id, 1) - 1
            if remaining > 0:
                shard.counts[user_id] = remaining
            else:
                shard.counts.pop(user_id, None)
                with self._users_lock:
                    self._users -= 1
                if not shard.engines:  # dicts never shrink: drop the tables a burst left
                    shard.engines, shard.counts = {}, {}
        engine._close()
        emitter = engine.emitter
        self.metrics_store.engine_cleaned(
            (time.perf_counter() - started) * 1e3,
            reason=_reason,
            events_sent=emitter.sent,
            events_failed=emitter.failed,
        )
        return True

    @contextlib.asynccontextmanager
    async def user_execution_scope(
        self, context: UserExecutionContext
    ) -> AsyncIterator[ExecutionEngine]:
        """`async with factory.user_execution_scope(ctx) as engine:` cleans up however it ends."""
        engine = self.create_for_user(context)
        try:
            yield engine
        finally:
            self.cleanup(engine)

    def live_engines(self, user_id: str | None = None) -> list[ExecutionEngine]:
        """Live engines (of one user when given), oldest first."""
        shards = (self._shard(user_id),) if user_id is not None else self._shards
        engines: list[ExecutionEngine] = []
        for shard in shards:
            with shard.lock:
                engines.extend(shard.engines.values())
        if user_id is not None:
            engines = [engine for engine in engines if engine.context.user_id == user_id]
        engines.sort(key=lambda engine: engine.engine_id)
        return engines

    def active_count(self, user_id: str) -> int:
        shard = self._shard(user_id)
        with shard.lock:
            return shard.counts.get(user_id, 0)

    @property
    def users_with_engines(self) -> int:
        with self._users_lock:
            return self._users

    # -- reaping -----------------------------------------------------------------------

    def reap(self) -> dict[str, int]:
        """Clean engines idle longer than PLANFORGE_ENGINE_IDLE_S (not while running) or
        older than PLANFORGE_ENGINE_TTL_S (even while running: a run that long is stuck)."""
        now = self.clock()
        idle_s = self.settings.engine_idle_s
        ttl_s = self.settings.engine_ttl_s
        reaped = {"idle": 0, "expired": 0}
        for engine in self.live_engines():
            if now - engine.created_at > ttl_s:
                reason = "expired"
            elif not engine.running and now - engine.last_active > idle_s:
                reason = "idle"
            else:
                continue
            if self.cleanup(engine, _reason=reason):
                reaped[reason] += 1
                _log.info(
                    "engine reclaimed",
                    reason=reason,
                    user_id=engine.context.user_id,
                    run_id=engine.context.run_id,
                    age_s=round(now - engine.created_at, 3),
                )
        return reaped

    async def _reap_forever(self) -> None:
        interval = self.settings.reap_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.reap()
            except Exception as exc:  # the reaper must outlive one bad pass
                _log.error("engine reaper pass failed", error=repr(exc)[:_ERROR_TEXT_LIMIT])

    def start(self) -> None:
        """Start the background reaper on the running event loop (no-op if started)."""
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap_forever(), name="planforge-engine-reaper"
            )

    async def aclose(self) -> None:
        """Stop the reaper and clean every live engine; the factory cannot create again."""
        self._closed = True
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        for engine in self.live_engines():
            self.cleanup(engine)
        with self._bucket_lock:
            cache, self._bucket_cache = self._bucket_cache, None
        if cache is not None:
            cache.close()
        with self._stateful_lock:
            self._stateful.clear()

    async def __aenter__(self) -> ExecutionEngineFactory:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- running (on a worker thread) --------------------------------------------------

    def record_outcome(
        self, name: str, duration_s: float, *, ok: bool, error: str | None = None
    ) -> None:
        try:
            self.factory.record_outcome(name, duration_s, ok=ok, error=error)
        except PlannerError as exc:  # the planner vanished (reload) between run and record
            _log.warning("outcome not recorded", planner=name, error=exc.message)

    def admit_context(
        self,
        objective: str,
        context: Mapping[str, Any] | None,
        *,
        planner: str | None = None,
        bucket: str | None = None,
        context_kind: str | None = None,
    ) -> str | None:
        """Decide the run's context kind and validate the context, before anything starts.

        Raises `InvalidContext` naming the field for a bad context. A bucket run is run by
        the holistic planner unless `planner` names another, so it is validated as that
        planner's kind. Blocking (a validator may take milliseconds): call it off the loop.
        """
        name = planner if bucket is None else planner or BUCKET_PLANNER
        return self.factory.admit_context(
            objective, context or {}, planner=name, context_kind=context_kind
        )

    def _instance(self, user_id: str, name: str) -> Planner:
        """Stateless planners are shared; a stateful one gets an instance per user."""
        shared = self.factory.get_planner(name)
        if not type(shared).stateful:
            return shared
        key = (user_id, name)
        with self._stateful_lock:
            instance = self._stateful.get(key)
            if instance is not None:
                self._stateful.move_to_end(key)
                return instance
        built = self.factory.new_planner(name)
        with self._stateful_lock:
            instance = self._stateful.setdefault(key, built)
            self._stateful.move_to_end(key)
            while len(self._stateful) > self.settings.max_users:
                self._stateful.popitem(last=False)
        return instance

    def stateful_instances(self) -> int:
        with self._stateful_lock:
            return len(self._stateful)

    def _bucket_config(self, bucket: str) -> Any:
        if self.store is None:
            raise PlannerError(
                f"Cannot run bucket {bucket!r}: this runtime has no configuration store. "
                "Pass store=ConfigStore(...) to ExecutionEngineFactory.",
                where="runtime",
                context={"bucket": bucket},
            )
        with self._bucket_lock:
            if self._bucket_cache is None:
                from planforge.configstore import BucketPlannerCache

                self._bucket_cache = BucketPlannerCache(self.store)
            cache = self._bucket_cache
        return cache.get_config(bucket)

    def _router(self, hub: EventHub) -> _HubRouter:
        with self._routers_lock:
            router = self._routers.get(hub)
            if router is None:
                router = _HubRouter()
                hub.subscribe(router.dispatch)
                self._routers[hub] = router
            return router

    def _execute(
        self,
        engine: ExecutionEngine,
        reporter: _RunReporter,
        objective: str,
        context: Mapping[str, Any] | None,
        planner: str | None,
        bucket: str | None,
        requested_kind: tuple[str | None, bool],
    ) -> Plan:
        """Resolve the planner and plan; runs on a worker thread, reports through `reporter`."""
        user = engine.context
        planning_context = dict(context or {})
        context_kind, admitted = requested_kind
        kind = (
            context_kind
            if admitted
            else self.admit_context(
                objective,
                planning_context,
                planner=planner,
                bucket=bucket,
                context_kind=context_kind,
            )
        )
        details: dict[str, Any] = {
            "objective": objective,
            "run_id": user.run_id,
            "thread_id": user.thread_id,
            "request_id": user.request_id,
        }
        if bucket is not None:
            config = self._bucket_config(bucket)
            name = planner or BUCKET_PLANNER
            planning_context["planner_config"] = config.toml  # the bucket decides
            details.update(
                selected_by="bucket",
                bucket=bucket,
                config={"id": config.id, "name": config.name, "version": config.version},
            )
        elif planner is not None:
            name = planner
            details["selected_by"] = "planner"
        else:
            name = self.factory.select_best_planner_name(objective, context_kind=kind)
            details["selected_by"] = "objective"
        details["context_kind"] = kind
        self.factory.admit(name)  # the planner's circuit breaker may refuse this run
        try:
            instance = self._instance(user.user_id, name)
        except BaseException:
            self.factory.release_admission(name)
            raise
        details["planner"] = name
        details["planner_version"] = type(instance).version
        reporter.planner_name = name
        reporter.started(name, details)
        reporter.thinking(f"planning with {name} (chosen by {details['selected_by']})", 0.0)
        hub = _bridgeable_hub(instance)
        router = self._router(hub) if hub is not None else None
        bridge = reporter.on_engine_event  # one bound method: remove() matches it by identity
        if router is not None:
            router.add(user.run_id, bridge)
        started = time.perf_counter()
        reporter.planning_started = started
        try:
            if router is not None:
                result: Any = instance.run(  # type: ignore[attr-defined]
                    objective, planning_context, run_id=user.run_id
                )
                plan = getattr(result, "plan", result)
            else:
                plan = instance.plan(objective, planning_context)
            if not isinstance(plan, Plan):
                raise TypeError(f"plan() returned {type(plan).__name__}, not a Plan")
        except InvalidContext as exc:  # the caller's input: neither a failure nor a success
            reporter.plan_duration_s = time.perf_counter() - started
            try:
                self.factory.release_admission(name, input_error=exc)
            except PlannerError as gone:  # the planner vanished (reload) meanwhile
                _log.warning("admission not released", planner=name, error=gone.message)
            raise
        except Exception as exc:
            reporter.plan_duration_s = time.perf_counter() - started
            raise PlanExecutionError(name, f"{type(exc).__name__}: {exc}") from exc
        finally:
            if router is not None:
                router.remove(user.run_id, bridge)
        reporter.plan_duration_s = time.perf_counter() - started
        return plan

    # -- metrics -----------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counters and duration summaries (mean, p50, p95, max over a bounded window)."""
        sent = failed = 0
        for engine in self.live_engines():
            sent += engine.emitter.sent
            failed += engine.emitter.failed
        snapshot = self.metrics_store.snapshot(live_events_sent=sent, live_events_failed=failed)
        snapshot["users_with_engines"] = self.users_with_engines
        snapshot["stateful_instances"] = self.stateful_instances()
        return snapshot
