"""A general circuit breaker with resilience4j's semantics, for planners and planner modules.

States: CLOSED (calls flow, outcomes go into a count-based sliding window), OPEN (calls are
refused until the wait is over), HALF_OPEN (a bounded number of trial calls decide), plus the
manual FORCED_OPEN (refuse until `reset()`) and DISABLED (always permit, never trip).

- The window holds the last `window_size` outcomes (a `deque` with maxlen: bounded memory).
  Rates are evaluated only once `min(minimum_calls, window_size)` calls are in it.
- It trips when the failure rate reaches `failure_rate_threshold`, or, when
  `slow_call_threshold_s` is set, when the share of calls slower than that reaches
  `slow_call_rate_threshold` (a separate rate, as in resilience4j; a slow failure counts in
  both).
- OPEN lasts `wait_s * wait_multiplier ** consecutive_trips`, capped at `max_wait_s`, where
  `consecutive_trips` counts the earlier trips since the breaker last closed (the first trip
  waits `wait_s`). The move to HALF_OPEN happens on the first `allow()` or state read after
  the wait.
- HALF_OPEN hands out `permitted_calls_in_half_open` permits; once that many trial outcomes are
  in, their failure (and slow) rate decides: CLOSED with a fresh window, or OPEN again with a
  longer wait. A caller whose permitted call never ran gives the permit back with
  `release_permission()` (the `call`/`guard` helpers do this for you).
- Outcomes recorded while OPEN, FORCED_OPEN or DISABLED are ignored: those calls were not part
  of the decision.

Listeners get a `BreakerTransition` after the lock is released; a listener that raises is
logged and never breaks the breaker. The clock is injectable (monotonic seconds).
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from planforge.errors import CircuitOpenError, PlannerError
from planforge.logs import get_logger

if TYPE_CHECKING:
    from planforge.settings import FactorySettings

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitOpenError",
]

P = ParamSpec("P")
T = TypeVar("T")

_ERROR_TEXT_LIMIT = 300
_log = get_logger("breaker")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


def _config_error(field_name: str, value: object, rule: str) -> PlannerError:
    return PlannerError(
        f"BreakerConfig.{field_name}={value!r} is not valid: it must be {rule}.",
        where="breaker",
        context={"field": field_name, "value": value},
    )


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_size: int = 20
    minimum_calls: int = 5
    failure_rate_threshold: float = 0.5
    slow_call_threshold_s: float | None = None
    slow_call_rate_threshold: float = 1.0
    wait_s: float = 30.0
    wait_multiplier: float = 2.0
    max_wait_s: float = 300.0
    permitted_calls_in_half_open: int = 3

    def __post_init__(self) -> None:
        for name in ("window_size", "minimum_calls", "permitted_calls_in_half_open"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _config_error(name, value, "an integer >= 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not _finite(value) or not 0.0 < value <= 1.0:
                raise _config_error(name, value, "a number in (0, 1]")
        if not _finite(self.wait_s) or self.wait_s <= 0.0:
            raise _config_error("wait_s", self.wait_s, "a number > 0")
        if not _finite(self.wait_multiplier) or self.wait_multiplier < 1.0:
            raise _config_error("wait_multiplier", self.wait_multiplier, "a number >= 1")
        if not _finite(self.max_wait_s) or self.max_wait_s < self.wait_s:
            raise _config_error("max_wait_s", self.max_wait_s, "a number >= wait_s")
        slow = self.slow_call_threshold_s
        if slow is not None and (not _finite(slow) or slow <= 0.0):
            raise _config_error("slow_call_threshold_s", slow, "None or a number > 0")

    @classmethod
    def from_settings(cls, settings: FactorySettings, **overrides: Any) -> BreakerConfig:
        """The factory's breaker knobs; the cap on backed-off waits is ten base waits."""
        values: dict[str, Any] = {
            "window_size": settings.breaker_window,
            "minimum_calls": settings.breaker_min_calls,
            "failure_rate_threshold": settings.breaker_failure_rate,
            "wait_s": settings.breaker_open_s,
            "max_wait_s": 10.0 * settings.breaker_open_s,
        }
        values.update(overrides)
        return cls(**values)


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """What a listener receives: which breaker moved, from where to where, when and why."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str


Listener = Callable[[BreakerTransition], None]


class CircuitBreaker:
    """Thread-safe: one lock guards the state; listeners run after it is released."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PlannerError(
                f"a circuit breaker needs a non-empty name, got {name!r}.", where="breaker"
            )
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = list(listeners)
        self._state = BreakerState.CLOSED
        # Sliding window of (failed, slow) outcomes with running counts.
        self._window: deque[tuple[bool, bool]] = deque(maxlen=self.config.window_size)
        self._failures = 0
        self._slow = 0
        # Half-open trials.
        self._permits_issued = 0
        self._trial_calls = 0
        self._trial_failures = 0
        self._trial_slow = 0
        # Open state and history.
        self._open_until: float | None = None
        self._consecutive_trips = 0
        self._trips = 0
        self._not_permitted = 0
        self._last_error: str | None = None

    # -- listeners --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, events: list[BreakerTransition]) -> None:
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception as exc:
                    _log.warning(
                        "breaker listener failed",
                        breaker=self.name,
                        to_state=event.to_state.value,
                        error=repr(exc)[:_ERROR_TEXT_LIMIT],
                    )

    # -- transitions (lock held) ------------------------------------------------------------

    def _move(
        self, to: BreakerState, now: float, reason: str, events: list[BreakerTransition]
    ) -> None:
        if to is self._state:
            return
        events.append(BreakerTransition(self.name, self._state, to, now, reason))
        self._state = to

    def _clear_window(self) -> None:
        self._window.clear()
        self._failures = 0
        self._slow = 0

    def _clear_trials(self) -> None:
        self._permits_issued = 0
        self._trial_calls = 0
        self._trial_failures = 0
        self._trial_slow = 0

    def _current_wait(self) -> float:
        c = self.config
        return min(c.wait_s * c.wait_multiplier**self._consecutive_trips, c.max_wait_s)

    def _trip(self, now: float, reason: str, events: list[BreakerTransition]) -> None:
        self._open_until = now + self._current_wait()
        self._consecutive_trips += 1
        self._trips += 1
        self._clear_window()
        self._clear_trials()
        self._move(BreakerState.OPEN, now, reason, events)

    def _close(self, now: float, reason: str, events: list[BreakerTransition]) -> None:
        self._open_until = None
        self._consecutive_trips = 0
        self._clear_window()
        self._clear_trials()
        self._move(BreakerState.CLOSED, now, reason, events)

    def _refresh(self, now: float, events: list[BreakerTransition]) -> None:
        """OPEN becomes HALF_OPEN once its wait is over."""
        if (
            self._state is BreakerState.OPEN
            and self._open_until is not None
            and now >= self._open_until
        ):
            self._clear_trials()
            self._move(BreakerState.HALF_OPEN, now, "wait elapsed", events)

    def _verdict(self, calls: int, failures: int, slow: int) -> str | None:
        """Why these outcomes should open the circuit, or None if they should not."""
        c = self.config
        failure_rate = failures / calls
        if failure_rate >= c.failure_rate_threshold:
            return f"failure rate {failure_rate:.0%} >= {c.failure_rate_threshold:.0%}"
        if c.slow_call_threshold_s is not None:
            slow_rate = slow / calls
            if slow_rate >= c.slow_call_rate_threshold:
                return f"slow-call rate {slow_rate:.0%} >= {c.slow_call_rate_threshold:.0%}"
        return None

    # -- the public protocol ----------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(self._clock(), events)
            state = self._state
        self._emit(events)
        return state

    def allow(self) -> bool:
        """Acquire permission for one call; in HALF_OPEN this consumes a trial permit."""
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(self._clock(), events)
            state = self._state
            if state is BreakerState.CLOSED or state is BreakerState.DISABLED:
                permitted = True
            elif (
                state is BreakerState.HALF_OPEN
                and self._permits_issued < self.config.permitted_calls_in_half_open
            ):
                self._permits_issued += 1
                permitted = True
            else:
                permitted = False
                self._not_permitted += 1
        self._emit(events)
        return permitted

    def release_permission(self) -> None:
        """Give back a HALF_OPEN permit whose call never ran (cancelled, interrupted)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._permits_issued > self._trial_calls:
                self._permits_issued -= 1

    def record_success(self, duration_s: float = 0.0) -> None:
        self._record(False, duration_s, None)

    def record_failure(self, duration_s: float = 0.0, error: str | None = None) -> None:
        self._record(True, duration_s, error)

    def _record(self, failed: bool, duration_s: float, error: str | None) -> None:
        if not _finite(duration_s) or duration_s < 0.0:
            raise PlannerError(
                f"a call duration must be a finite number of seconds >= 0, got {duration_s!r}.",
                where="breaker",
                context={"breaker_name": self.name},
            )
        threshold = self.config.slow_call_threshold_s
        slow = threshold is not None and duration_s > threshold
        events: list[BreakerTransition] = []
        with self._lock:
            now = self._clock()
            self._refresh(now, events)
            if failed and error is not None:
                self._last_error = str(error)[:_ERROR_TEXT_LIMIT]
            state = self._state
            if state is BreakerState.CLOSED:
                self._add_to_window(failed, slow, now, events)
            elif state is BreakerState.HALF_OPEN and self._trial_calls < self._permits_issued:
                self._trial_calls += 1
                self._trial_failures += failed
                self._trial_slow += slow
                if self._trial_calls >= self.config.permitted_calls_in_half_open:
                    why = self._verdict(self._trial_calls, self._trial_failures, self._trial_slow)
                    if why is None:
                        self._close(now, "trial calls succeeded", events)
                    else:
                        self._trip(now, f"trial calls: {why}", events)
        self._emit(events)

    def _add_to_window(
        self, failed: bool, slow: bool, now: float, events: list[BreakerTransition]
    ) -> None:
        window = self._window
        if len(window) == window.maxlen:
            old_failed, old_slow = window[0]
            self._failures -= old_failed
            self._slow -= old_slow
        window.append((failed, slow))
        self._failures += failed
        self._slow += slow
        calls = len(window)
        if calls >= min(self.config.minimum_calls, self.config.window_size):
            why = self._verdict(calls, self._failures, self._slow)
            if why is not None:
                self._trip(now, why, events)

    # -- manual control ---------------------------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until `reset()`."""
        self._manual(BreakerState.FORCED_OPEN, "forced open")

    def disable(self) -> None:
        """Permit every call and never trip, until `reset()`."""
        self._manual(BreakerState.DISABLED, "disabled")

    def reset(self) -> None:
        """Back to a fresh CLOSED breaker (window, trials and back-off forgotten)."""
        self._manual(BreakerState.CLOSED, "reset")

    def _manual(self, to: BreakerState, reason: str) -> None:
        events: list[BreakerTransition] = []
        with self._lock:
            now = self._clock()
            self._open_until = None
            self._consecutive_trips = 0
            self._clear_window()
            self._clear_trials()
            self._move(to, now, reason, events)
        self._emit(events)

    # -- views ------------------------------------------------------------------------------

    def retry_after_s(self) -> float | None:
        """Seconds until an OPEN breaker admits trial calls; None in any other state."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._open_until is not None:
                return max(0.0, self._open_until - self._clock())
            return None

    def snapshot(self) -> dict[str, Any]:
        events: list[BreakerTransition] = []
        with self._lock:
            now = self._clock()
            self._refresh(now, events)
            calls = len(self._window)
            data: dict[str, Any] = {
                "name": self.name,
                "state": self._state.value,
                "failure_rate": self._failures / calls if calls else None,
                "slow_call_rate": self._slow / calls if calls else None,
                "calls_in_window": calls,
                "failures_in_window": self._failures,
                "slow_calls_in_window": self._slow,
                "open_until": self._open_until,
                "retry_after_s": (
                    max(0.0, self._open_until - now)
                    if self._state is BreakerState.OPEN and self._open_until is not None
                    else None
                ),
                "trips": self._trips,
                "consecutive_trips": self._consecutive_trips,
                "half_open_permits_left": (
                    self.config.permitted_calls_in_half_open - self._permits_issued
                    if self._state is BreakerState.HALF_OPEN
                    else None
                ),
                "not_permitted": self._not_permitted,
                "last_error": self._last_error,
            }
        self._emit(events)
        return data

    # -- guarded calls ----------------------------------------------------------------------

    def _refused(self) -> CircuitOpenError:
        with self._lock:
            state = self._state
            retry = (
                max(0.0, self._open_until - self._clock())
                if state is BreakerState.OPEN and self._open_until is not None
                else None
            )
        return CircuitOpenError(self.name, retry, state)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """`with breaker.guard(): ...` permits or raises `CircuitOpenError`, then records."""
        if not self.allow():
            raise self._refused()
        start = self._clock()
        try:
            yield
        except Exception as exc:
            self.record_failure(max(0.0, self._clock() - start), repr(exc))
            raise
        except BaseException:
            self.release_permission()  # interrupted, not failed: the trial did not happen
            raise
        self.record_success(max(0.0, self._clock() - start))

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` under the breaker; raises `CircuitOpenError` when not permitted."""
        with self.guard():
            return fn(*args, **kwargs)
