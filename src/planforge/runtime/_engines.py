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
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from planforge.contract import Plan, Run
from planforge.errors import InvalidContext, PlannerError
from planforge.factory import PlannerFactory
from planforge.logs import get_logger
from planforge.runtime._bus import EventBus
from planforge.runtime._context import UserExecutionContext
from planforge.runtime._emitter import UserEventEmitter
from planforge.runtime._engine import ExecutionEngine, PlanRequest
from planforge.runtime._executor import Executor, build_executor
from planforge.runtime._jobs import JobFailure, RunJob
from planforge.runtime._metrics import RuntimeMetrics
from planforge.runtime._reporter import RunReporter
from planforge.runtime._settings import RuntimeSettings, load_runtime_settings
from planforge.runtime.errors import RunLimitExceeded, UserCapacityExceeded

__all__ = ["ExecutionEngine", "ExecutionEngineFactory"]

#: The planner a bucket's configuration is run with unless `planner=` names another.
_SHARDS = 64  # a power of two: the shard is crc32(user) & (_SHARDS - 1)
_ERROR_TEXT_LIMIT = 500
_log = get_logger("runtime.engine")


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
        executor: Executor | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.bus = bus
        self.store = store
        self.settings = settings if settings is not None else load_runtime_settings()
        if executor is None or isinstance(executor, str):
            name = executor or self.settings.executor or "inline"
            executor = build_executor(name, factory, self.settings)
        self.executor: Executor = executor
        self.clock = clock
        self.metrics_store = RuntimeMetrics()
        self._shards = tuple(_Shard() for _ in range(_SHARDS))
        self._users = 0
        self._users_lock = threading.Lock()
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
        """Start the executor's workers, and the background reaper on the running event loop
        (no-op if started)."""
        self.executor.start()
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
        await asyncio.to_thread(self.executor.close)

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
        the store's planner (`BUCKET_PLANNER`) unless `planner` names another, so it is
        validated as that planner's kind. Blocking (a validator may take milliseconds): call
        it off the loop.
        """
        name = planner if bucket is None else planner or _bucket_planner()
        return self.factory.admit_context(
            objective, context or {}, planner=name, context_kind=context_kind
        )

    def stateful_instances(self) -> int:
        """Stateful planner instances kept in this process (inline runs only)."""
        return int(self.executor.describe().get("stateful_instances", 0))

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

    def _execute(
        self, engine: ExecutionEngine, reporter: RunReporter, run: Run, request: PlanRequest
    ) -> Plan:
        """Resolve the planner and plan; runs on a worker thread, reports through `reporter`."""
        user = engine.context
        planning_context = dict(request.context or {})
        kind = (
            request.context_kind
            if request.admitted
            else self.admit_context(
                request.objective,
                planning_context,
                planner=request.planner,
                bucket=request.bucket,
                context_kind=request.context_kind,
            )
        )
        details: dict[str, Any] = {
            "objective": request.objective,
            "run_id": user.run_id,
            "thread_id": user.thread_id,
            "request_id": user.request_id,
        }
        name = self._choose(request, kind, run, details)
        details["context_kind"] = kind
        record = self.factory.admit(name)  # the planner's circuit breaker may refuse this run
        details["planner"] = name
        details["planner_version"] = record.spec.version  # metadata: nothing imported here
        engine.details = details
        reporter.planner_name = name
        reporter.started(name, details)
        reporter.thinking(f"planning with {name} (chosen by {details['selected_by']})", 0.0)
        job = RunJob(
            user.run_id,
            user.user_id,
            name,
            request.objective,
            planning_context,
            run.config,
            run.remaining_s,
        )
        return self._plan(job, run, reporter, details)

    def _choose(
        self, request: PlanRequest, kind: str | None, run: Run, details: dict[str, Any]
    ) -> str:
        """The planner's name; a bucket's configuration goes into the run (the bucket decides)."""
        if request.bucket is not None:
            config = self._bucket_config(request.bucket)
            run.config = config.toml
            details.update(
                selected_by="bucket",
                bucket=request.bucket,
                config={
                    "id": config.id,
                    "name": config.name,
                    "version": config.version,
                    "digest": config.digest,
                },
            )
            return request.planner or _bucket_planner()
        if request.planner is not None:
            details["selected_by"] = "planner"
            return request.planner
        details["selected_by"] = "objective"
        return self.factory.select_best_planner_name(request.objective, context_kind=kind)

    def _plan(self, job: RunJob, run: Run, reporter: RunReporter, details: dict[str, Any]) -> Plan:
        """Hand the job to the executor; a failure counts for the planner only when it is
        the planner's (a load failure or a rejected context gives the admission back)."""
        reporter.planning_started = time.perf_counter()
        try:
            outcome = self.executor.execute(job, run)
        except JobFailure as failure:
            reporter.plan_duration_s = failure.duration_s
            details["worker"] = failure.worker or None
            if failure.stage in ("load", "input"):
                input_error = failure.error if isinstance(failure.error, InvalidContext) else None
                try:
                    self.factory.release_admission(job.planner, input_error=input_error)
                except PlannerError as gone:  # the planner vanished (reload) meanwhile
                    _log.warning("admission not released", planner=job.planner, error=gone.message)
            raise failure.error from None
        reporter.plan_duration_s = outcome.duration_s
        reporter.worker = details["worker"] = outcome.worker
        assert outcome.plan is not None  # a planning job, never a task job
        return outcome.plan

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
        snapshot["executor"] = self.executor.describe()
        return snapshot


def _bucket_planner() -> str:
    """The planner whose configurations the store keeps; the store is imported only by runs
    that use it (it brings the database layer and the configuration models)."""
    from planforge.configstore import BUCKET_PLANNER

    return BUCKET_PLANNER
