"""Engine events: one small subscriber interface the runtime connects to its event stream.

Every stage of a planning run reports through an `EventHub`. The hub numbers events with a
per-hub monotonically increasing `sequence`, keeps a bounded ring of recent events for late
readers, and calls subscribers outside its lock. A subscriber that raises is counted and
logged; it never breaks emission or the other subscribers.

A run is followed through `route(run_id, callback)`: one dictionary lookup per event finds
the callbacks waiting for that run, so a hub shared by many concurrent runs never calls
every run's callback for every event. `to_run(run)` is the callback that passes a run's
events on to the run protocol's `Run` (`planforge.contract`).

Delivery order: one thread's events reach each subscriber in emission order. When several
threads emit at once their deliveries may interleave; consumers that need a total order sort
by `sequence`, which is assigned under the lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from planforge.contract import Run
from planforge.errors import PlannerError
from planforge.logs import get_logger

__all__ = [
    "BEST_SEQUENCE_UPDATED",
    "CONFIGURATION_CHANGED",
    "EVALUATION_COMPLETED",
    "EVALUATION_PROGRESS",
    "EVALUATION_STARTED",
    "EVENT_TYPES",
    "MODULE_COMPLETED",
    "MODULE_FAILED",
    "MODULE_SKIPPED",
    "MODULE_STARTED",
    "PLANNING_COMPLETED",
    "SEQUENCE_GENERATION_COMPLETED",
    "SEQUENCE_GENERATION_STARTED",
    "EngineEvent",
    "EventHub",
    "Subscriber",
    "to_run",
]

SEQUENCE_GENERATION_STARTED = "sequence_generation_started"
SEQUENCE_GENERATION_COMPLETED = "sequence_generation_completed"
EVALUATION_STARTED = "evaluation_started"
EVALUATION_PROGRESS = "evaluation_progress"
EVALUATION_COMPLETED = "evaluation_completed"
BEST_SEQUENCE_UPDATED = "best_sequence_updated"
PLANNING_COMPLETED = "planning_completed"
MODULE_STARTED = "module_started"
MODULE_COMPLETED = "module_completed"
MODULE_FAILED = "module_failed"
MODULE_SKIPPED = "module_skipped"
CONFIGURATION_CHANGED = "configuration_changed"

#: The event types the engine emits, in the order a run meets them.
EVENT_TYPES: tuple[str, ...] = (
    CONFIGURATION_CHANGED,
    MODULE_STARTED,
    MODULE_COMPLETED,
    MODULE_FAILED,
    MODULE_SKIPPED,
    SEQUENCE_GENERATION_STARTED,
    SEQUENCE_GENERATION_COMPLETED,
    EVALUATION_STARTED,
    EVALUATION_PROGRESS,
    EVALUATION_COMPLETED,
    BEST_SEQUENCE_UPDATED,
    PLANNING_COMPLETED,
)

_ERROR_TEXT_LIMIT = 300
_log = get_logger("holistic.events")


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One thing that happened in a run. `payload` is a read-only copy of what was emitted."""

    type: str
    run_id: str
    sequence: int
    ts: float
    payload: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "ts": self.ts,
            "payload": dict(self.payload),
        }


Subscriber = Callable[[EngineEvent], None]


class EventHub:
    """Thread-safe fan-out of engine events with a bounded history.

    `clock` gives the wall-clock timestamp of each event (seconds since the epoch by default;
    inject one in tests).
    """

    def __init__(self, *, history: int = 256, clock: Callable[[], float] = time.time) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise PlannerError(
                f"EventHub history must be an integer >= 0, got {history!r}.", where="events"
            )
        self._clock = clock
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self._routes: dict[str, tuple[Subscriber, ...]] = {}
        self._recent: deque[EngineEvent] = deque(maxlen=history)
        self._sequence = 0
        self._subscriber_errors = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber; the returned handle removes it (calling it twice is harmless)."""
        if not callable(callback):
            raise PlannerError(
                f"an event subscriber must be callable, got {callback!r}.", where="events"
            )
        with self._lock:
            self._subscribers = (*self._subscribers, callback)
        removed = False

        def unsubscribe() -> None:
            nonlocal removed
            with self._lock:
                if removed:
                    return
                removed = True
                subscribers = list(self._subscribers)
                for index, subscriber in enumerate(subscribers):
                    if subscriber is callback:
                        del subscribers[index]
                        break
                self._subscribers = tuple(subscribers)

        return unsubscribe

    def route(self, run_id: str, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` with every event of `run_id` until the returned handle is called."""
        with self._lock:
            self._routes[run_id] = (*self._routes.get(run_id, ()), callback)
        removed = False

        def unroute() -> None:
            nonlocal removed
            with self._lock:
                if removed:
                    return
                removed = True
                left = tuple(cb for cb in self._routes.get(run_id, ()) if cb is not callback)
                if left:
                    self._routes[run_id] = left
                else:
                    self._routes.pop(run_id, None)

        return unroute

    def emit(
        self, type: str, payload: Mapping[str, Any] | None = None, *, run_id: str = ""
    ) -> EngineEvent:
        """Number, record and deliver one event; returns it."""
        if not isinstance(type, str) or not type:
            raise PlannerError(
                f"an event type must be a non-empty string, got {type!r}.", where="events"
            )
        frozen = MappingProxyType(dict(payload or {}))
        with self._lock:
            self._sequence += 1
            event = EngineEvent(type, run_id, self._sequence, self._clock(), frozen)
            self._recent.append(event)
            subscribers = self._subscribers
            routed = self._routes.get(run_id) if self._routes else None
        if routed:
            subscribers = (*subscribers, *routed)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception as exc:
                with self._lock:
                    self._subscriber_errors += 1
                _log.warning(
                    "event subscriber failed",
                    event_type=type,
                    run_id=run_id,
                    sequence=event.sequence,
                    error=repr(exc)[:_ERROR_TEXT_LIMIT],
                )
        return event

    def recent(self, n: int | None = None) -> list[EngineEvent]:
        """The last `n` events (all kept ones when None), oldest first."""
        with self._lock:
            events = list(self._recent)
        if n is None:
            return events
        if n <= 0:
            return []
        return events[-n:]

    @property
    def subscriber_errors(self) -> int:
        """How many subscriber calls raised since the hub was made."""
        with self._lock:
            return self._subscriber_errors

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    @property
    def last_sequence(self) -> int:
        with self._lock:
            return self._sequence


def to_run(run: Run) -> Subscriber:
    """A subscriber that passes the engine's module and progress events on to `run`."""

    def forward(event: EngineEvent) -> None:
        payload = event.payload
        if event.type == EVALUATION_PROGRESS:
            done, total = int(payload.get("done", 0)), int(payload.get("total", 0))
            run.progress(done, total, f"evaluated {done} of {total} candidate sequences")
        else:  # module_started / _completed / _failed share the protocol's names and keys
            run.emit(event.type, payload)

    return forward
