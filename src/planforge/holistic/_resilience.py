"""Graceful degradation for module calls: timeout, circuit breaker, timings and events.

`ModuleGuard.call` runs one module call and never lets the module break the run: a module that
raises, times out or whose breaker refuses it contributes the `default` you pass, and the
guard returns a warning naming the module and the cause, for the plan's `warnings`.

Each module (`kind.name`) has its own `CircuitBreaker` (the factory's, with resilience4j
semantics). A call slower than `slow_call_s` is recorded as slow and trips the breaker through
its slow-call rate; a timeout is a failure.

Timeouts. A call with a timeout runs on one of a few shared worker threads and the caller
waits at most `timeout_s`. A hung call cannot be killed in a thread: the guard stops waiting,
reports it, and that worker stays busy until the call returns by itself. The pool is bounded:
while every worker is stuck in such a call, further calls fail fast with a warning instead of
queueing forever, and a call that cannot get a free worker within its timeout is skipped. The
workers are daemon threads (not a `ThreadPoolExecutor`, whose workers are joined at interpreter
exit), so a module that never returns cannot keep the process alive. A call whose timeout is
None runs inline in the caller's thread (no thread hop). `ModuleGuard.call_each` runs a stage's
calls one after another on one worker, each with its own timeout, breaker, events and warning,
so a stage of many short modules costs one thread hop instead of one per module.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from planforge.errors import PlannerError
from planforge.factory import BreakerConfig, BreakerState, CircuitBreaker
from planforge.holistic._events import (
    MODULE_COMPLETED,
    MODULE_FAILED,
    MODULE_SKIPPED,
    MODULE_STARTED,
    EventHub,
)
from planforge.holistic._perf import PerformanceTracker
from planforge.holistic._workers import Batch, Flight, ModuleCall, WorkerPool
from planforge.logs import get_logger

if TYPE_CHECKING:
    from planforge.holistic._config import EngineSettings

__all__ = ["DEFAULT_TIMEOUT", "ModuleCall", "ModuleGuard", "breaker_config_from_settings"]

T = TypeVar("T")
D = TypeVar("D")

_ERROR_TEXT_LIMIT = 300
_log = get_logger("holistic.resilience")


class _Default(enum.Enum):
    TIMEOUT = "the guard's default timeout"


#: Pass as `timeout_s` (the default) to use the guard's own `default_timeout_s`.
DEFAULT_TIMEOUT = _Default.TIMEOUT


def breaker_config_from_settings(settings: EngineSettings) -> BreakerConfig:
    """The engine's breaker knobs; backed-off waits are capped at ten base waits."""
    return BreakerConfig(
        window_size=settings.breaker_window,
        minimum_calls=min(settings.breaker_min_calls, settings.breaker_window),
        failure_rate_threshold=settings.breaker_failure_rate,
        slow_call_threshold_s=settings.slow_call_s,
        slow_call_rate_threshold=settings.breaker_slow_call_rate,
        wait_s=settings.breaker_open_s,
        max_wait_s=10.0 * settings.breaker_open_s,
    )


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3g}"


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_ERROR_TEXT_LIMIT]


class ModuleGuard:
    """Thread-safe. One guard per engine; it owns the per-module breakers and the workers.

    `clock` (monotonic seconds) measures call durations and drives the breakers; waiting for
    a timed call always uses real time.
    """

    def __init__(
        self,
        *,
        breaker_config: BreakerConfig | None = None,
        perf: PerformanceTracker | None = None,
        events: EventHub | None = None,
        default_timeout_s: float | None = 2.0,
        max_workers: int = 4,
        max_modules: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise PlannerError(
                f"ModuleGuard max_workers must be an integer >= 1, got {max_workers!r}.",
                where="guard",
            )
        if default_timeout_s is not None and not default_timeout_s > 0:
            raise PlannerError(
                f"ModuleGuard default_timeout_s must be None or > 0, got {default_timeout_s!r}.",
                where="guard",
            )
        self.breaker_config = breaker_config or BreakerConfig()
        self.perf = perf if perf is not None else PerformanceTracker()
        self.events = events if events is not None else EventHub()
        self.default_timeout_s = default_timeout_s
        self.max_workers = max_workers
        self._max_modules = max_modules
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._slots = threading.BoundedSemaphore(max_workers)
        self._stuck = 0
        self._pool = WorkerPool(max_workers, "planforge-module")

    @classmethod
    def from_settings(
        cls,
        settings: EngineSettings,
        *,
        perf: PerformanceTracker | None = None,
        events: EventHub | None = None,
        max_workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> ModuleGuard:
        return cls(
            breaker_config=breaker_config_from_settings(settings),
            perf=perf,
            events=events,
            default_timeout_s=settings.module_timeout_s,
            max_workers=max_workers,
            clock=clock,
        )

    # -- breakers ---------------------------------------------------------------------------

    def breaker(self, module_key: str) -> CircuitBreaker:
        """The module's breaker, made on first use (at most `max_modules` of them)."""
        with self._lock:
            found = self._breakers.get(module_key)
            if found is None:
                if len(self._breakers) >= self._max_modules:
                    raise PlannerError(
                        f"the module guard already tracks {self._max_modules} modules; "
                        f"{module_key!r} would exceed the bound. Use one guard per engine.",
                        where="guard",
                        context={"module": module_key},
                    )
                found = CircuitBreaker(module_key, self.breaker_config, clock=self._clock)
                self._breakers[module_key] = found
            return found

    def force_open(self, module_key: str) -> None:
        """Skip the module until `reset`."""
        self.breaker(module_key).force_open()

    def disable_breaker(self, module_key: str) -> None:
        """Always call the module, never trip its breaker, until `reset`."""
        self.breaker(module_key).disable()

    def reset(self, module_key: str) -> None:
        self.breaker(module_key).reset()

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Every module breaker's snapshot, by module key in sorted order, for health reports."""
        with self._lock:
            breakers = sorted(self._breakers.items())
        return {key: breaker.snapshot() for key, breaker in breakers}

    @property
    def stuck_workers(self) -> int:
        """Workers still running a call whose caller stopped waiting (a timeout)."""
        with self._lock:
            return self._stuck

    # -- the call ---------------------------------------------------------------------------

    def call(
        self,
        module_key: str,
        fn: Callable[..., T],
        *args: Any,
        default: D,
        timeout_s: float | _Default | None = DEFAULT_TIMEOUT,
        operation: str = "call",
        run_id: str = "",
    ) -> tuple[T | D, str | None]:
        """`(fn(*args), None)`, or `(default, warning)` when the module failed or was skipped."""
        timeout = self.default_timeout_s if isinstance(timeout_s, _Default) else timeout_s
        if timeout is not None and not timeout > 0:
            raise PlannerError(
                f"a module timeout must be None or > 0 seconds, got {timeout!r}.",
                where="guard",
                context={"module": module_key},
            )
        breaker = self.breaker(module_key)
        if not breaker.allow():
            return default, self._skipped(module_key, operation, run_id, breaker)
        self.events.emit(
            MODULE_STARTED, {"module": module_key, "operation": operation}, run_id=run_id
        )
        if timeout is None:
            return self._inline(module_key, operation, run_id, breaker, fn, args, default)
        return self._timed(module_key, operation, run_id, breaker, fn, args, default, timeout)

    def _inline(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        default: D,
    ) -> tuple[T | D, str | None]:
        start = self._clock()
        try:
            result = fn(*args)
        except Exception as exc:
            duration = max(0.0, self._clock() - start)
            return default, self._failed(module_key, operation, run_id, breaker, duration, exc)
        except BaseException:
            breaker.release_permission()  # interrupted, not failed
            raise
        self._succeeded(module_key, operation, run_id, breaker, max(0.0, self._clock() - start))
        return result, None

    def _timed(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        default: D,
        timeout: float,
    ) -> tuple[T | D, str | None]:
        deadline = time.monotonic() + timeout
        with self._lock:
            all_stuck = self._stuck >= self.max_workers
        if all_stuck or not self._slots.acquire(timeout=timeout):
            breaker.release_permission()  # not the module's fault: no trial happened
            return default, self._no_worker(module_key, operation, run_id, timeout)
        flight = Flight()

        def task() -> T:
            try:
                return fn(*args)
            finally:
                if self._landed(flight):
                    _log.info("timed-out module call finished", module=module_key)

        start = self._clock()
        try:
            call = self._pool.submit(task)
        except BaseException:
            self._slots.release()
            breaker.release_permission()
            raise
        try:
            ended = call.wait(deadline - time.monotonic())
        except BaseException:  # the caller was interrupted while waiting, not the module
            breaker.release_permission()
            raise
        if not ended:
            self._abandon(flight)
            duration = max(timeout, self._clock() - start)
            return default, self._timed_out(
                module_key, operation, run_id, breaker, duration, timeout
            )
        if isinstance(call.error, Exception):
            duration = max(0.0, self._clock() - start)
            exc = call.error
            return default, self._failed(module_key, operation, run_id, breaker, duration, exc)
        if call.error is not None:
            breaker.release_permission()
            raise call.error
        self._succeeded(module_key, operation, run_id, breaker, max(0.0, self._clock() - start))
        return call.result, None

    def _abandon(self, flight: Flight) -> None:
        """The caller stops waiting: until the call returns, its worker counts as stuck."""
        with self._lock:
            if not flight.finished:
                flight.abandoned = True
                self._stuck += 1

    def call_each(
        self, calls: Sequence[ModuleCall], *, check: Callable[[], None] | None = None
    ) -> list[tuple[Any, str | None]]:
        """`call` for each call in order, at the guard's default timeout, in one worker hop.

        A stage of short modules would otherwise pay a thread hop per module. Each module
        still has its own timeout, breaker, events and warning, exactly as through `call`;
        `check` runs before each module (a run's deadline: what it raises stops the stage
        there and reaches the caller). After a module times out, the rest go one by one.
        """
        timeout = self.default_timeout_s
        if timeout is None or len(calls) < 2:
            return self._one_by_one(calls, check)
        with self._lock:
            all_stuck = self._stuck >= self.max_workers
        if all_stuck or not self._slots.acquire(blocking=False):
            return self._one_by_one(calls, check)  # it waits for a worker, and says why not
        breakers = [self.breaker(call.module_key) for call in calls]
        allowed = [breaker.allow() for breaker in breakers]
        batch = Batch(
            [partial(c.fn, *c.args) if ok else None for c, ok in zip(calls, allowed, strict=True)],
            check,
            self._clock,
        )
        flight = Flight()
        try:
            self._pool.submit(partial(self._run_batch, batch, flight))
        except BaseException:
            self._slots.release()
            self._release(0, len(calls), breakers, allowed)
            raise
        results: list[tuple[Any, str | None]] = []
        taken = len(calls)  # calls from here on are not the batch's: they go one by one
        for index, call in enumerate(calls):
            if index >= taken:
                results.extend(self._one_by_one([call], check))
            elif not allowed[index]:
                key, operation, run_id = call.module_key, call.operation, call.run_id
                results.append(
                    (call.default, self._skipped(key, operation, run_id, breakers[index]))
                )
            else:
                try:
                    ended, outcome = self._collected(batch, index, call, breakers[index], timeout)
                except BaseException:  # the module's own permit is given back already
                    batch.cancel()
                    self._release(index + 1, taken, breakers, allowed)
                    raise
                results.append(outcome)
                if not ended:  # timed out: the calls the worker took stay the batch's
                    cut = self._cut(batch, flight, index) + 1
                    self._release(cut, taken, breakers, allowed)
                    taken = min(taken, cut)
        return results

    def _cut(self, batch: Batch, flight: Flight, index: int) -> int:
        """Stop the batch after call `index` timed out; the last call the worker took. Still
        in that call, the worker counts as stuck; past it (the call ended just late), it goes
        on with the call it took and the caller collects that one as usual."""
        claimed = batch.cancel()
        if claimed == index:
            self._abandon(flight)
        return claimed

    def _collected(
        self,
        batch: Batch,
        index: int,
        call: ModuleCall,
        breaker: CircuitBreaker,
        timeout: float,
    ) -> tuple[bool, tuple[Any, str | None]]:
        """Whether the module ended in time, and its outcome, reported as `call` reports it."""
        key, operation, run_id = call.module_key, call.operation, call.run_id
        try:
            ended = batch.wait(index, timeout)
        except BaseException:  # the caller was interrupted while waiting, not the module
            breaker.release_permission()
            raise
        if ended and batch.stopped_at == index:
            breaker.release_permission()  # the run stopped before the module ran
            assert batch.stop is not None
            raise batch.stop
        self.events.emit(MODULE_STARTED, {"module": key, "operation": operation}, run_id=run_id)
        if not ended:
            begun = batch.begun[index] is not None
            duration = max(timeout, self._clock() - batch.starts[index]) if begun else timeout
            warning = self._timed_out(key, operation, run_id, breaker, duration, timeout)
            return False, (call.default, warning)
        duration = max(0.0, batch.ends[index] - batch.starts[index])
        error = batch.errors[index]
        if isinstance(error, Exception):
            warning = self._failed(key, operation, run_id, breaker, duration, error)
            return True, (call.default, warning)
        if error is not None:
            breaker.release_permission()
            raise error
        self._succeeded(key, operation, run_id, breaker, duration)
        return True, (batch.results[index], None)

    def _run_batch(self, batch: Batch, flight: Flight) -> None:
        try:
            batch.run()
        finally:
            if self._landed(flight):
                _log.info("timed-out module batch finished", modules=batch.count)

    def _landed(self, flight: Flight) -> bool:
        """A worker is done with a call or batch: its slot is free, and it no longer counts
        as stuck. Whether the caller had stopped waiting for it."""
        self._slots.release()
        with self._lock:
            flight.finished = True
            if flight.abandoned:
                self._stuck -= 1
            return flight.abandoned

    @staticmethod
    def _release(
        start: int, stop: int, breakers: list[CircuitBreaker], allowed: list[bool]
    ) -> None:
        """Give back the permits of calls `start` to `stop` (not included), which the
        batch will not run."""
        for breaker, ok in zip(breakers[start:stop], allowed[start:stop], strict=True):
            if ok:
                breaker.release_permission()

    def _one_by_one(
        self, calls: Sequence[ModuleCall], check: Callable[[], None] | None
    ) -> list[tuple[Any, str | None]]:
        results: list[tuple[Any, str | None]] = []
        for call in calls:
            if check is not None:
                check()
            results.append(
                self.call(
                    call.module_key,
                    call.fn,
                    *call.args,
                    default=call.default,
                    operation=call.operation,
                    run_id=call.run_id,
                )
            )
        return results

    # -- outcomes ---------------------------------------------------------------------------

    def _no_worker(self, module_key: str, operation: str, run_id: str, timeout: float) -> str:
        """No worker was free: the warning says whether they are all stuck or only busy."""
        stuck = self.stuck_workers
        why = (
            f"all {self.max_workers} module workers are stuck in calls that timed out"
            if stuck >= self.max_workers
            else f"no free module worker within {_seconds(timeout)} s "
            f"({stuck} of {self.max_workers} stuck in calls that timed out)"
        )
        self.events.emit(
            MODULE_SKIPPED,
            {"module": module_key, "operation": operation, "reason": why},
            run_id=run_id,
        )
        _log.warning("module skipped", module=module_key, reason=why)
        return f"{module_key} skipped: {why}"

    def _succeeded(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        duration: float,
    ) -> None:
        breaker.record_success(duration)
        self.perf.record(module_key, operation, duration)
        threshold = self.breaker_config.slow_call_threshold_s
        self.events.emit(
            MODULE_COMPLETED,
            {
                "module": module_key,
                "operation": operation,
                "duration_ms": duration * 1000.0,
                "slow": threshold is not None and duration > threshold,
            },
            run_id=run_id,
        )

    def _failed(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        duration: float,
        exc: Exception,
    ) -> str:
        error = _error_text(exc)
        self._record_failure(
            module_key,
            operation,
            run_id,
            breaker,
            duration,
            error,
            {"error_type": type(exc).__name__},
        )
        _log.warning("module failed", module=module_key, operation=operation, error=error)
        return f"{module_key} failed: {error}"

    def _timed_out(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        duration: float,
        timeout: float,
    ) -> str:
        error = f"timed out after {_seconds(timeout)} s"
        self._record_failure(
            module_key,
            operation,
            run_id,
            breaker,
            duration,
            error,
            {"error_type": "timeout", "timeout_s": timeout},
        )
        _log.warning("module timed out", module=module_key, operation=operation, timeout_s=timeout)
        return f"{module_key} {error}"

    def _record_failure(
        self,
        module_key: str,
        operation: str,
        run_id: str,
        breaker: CircuitBreaker,
        duration: float,
        error: str,
        detail: dict[str, Any],
    ) -> None:
        """One failure, however it happened: the breaker, the timings and the event."""
        breaker.record_failure(duration, error)
        self.perf.record(module_key, operation, duration, failed=True)
        self.events.emit(
            MODULE_FAILED,
            {
                "module": module_key,
                "operation": operation,
                "duration_ms": duration * 1000.0,
                "error": error,
                **detail,
            },
            run_id=run_id,
        )

    def _skipped(
        self, module_key: str, operation: str, run_id: str, breaker: CircuitBreaker
    ) -> str:
        state = breaker.state
        retry = breaker.retry_after_s()
        if state is BreakerState.FORCED_OPEN:
            why = "circuit breaker forced open (reset it to call the module again)"
        elif state is BreakerState.OPEN and retry is not None:
            why = f"circuit breaker open (retry in {_seconds(retry)} s)"
        elif state is BreakerState.HALF_OPEN:
            why = "circuit breaker half-open (its trial calls are in flight)"
        else:
            why = f"circuit breaker {state.value}"
        self.events.emit(
            MODULE_SKIPPED,
            {
                "module": module_key,
                "operation": operation,
                "reason": why,
                "state": state.value,
                "retry_after_s": retry,
            },
            run_id=run_id,
        )
        return f"{module_key} skipped: {why}"

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the idle workers; a worker stuck in a call ends when the call returns."""
        self._pool.close()

    def __enter__(self) -> ModuleGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
