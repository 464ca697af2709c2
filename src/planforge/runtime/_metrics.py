"""Runtime counters and duration windows: exact, bounded, never sampled.

The original runtime sampled metrics with random numbers, so two identical runs reported
different figures. Here every event is counted, and durations live in a fixed-size window
whose statistics are computed on read, so memory stays constant however long the process
runs and the same sequence of observations always gives the same report.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_WINDOW", "DurationWindow", "RuntimeMetrics"]

#: How many recent durations each window keeps.
DEFAULT_WINDOW = 1024


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (no interpolation: an observed value)."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class DurationWindow:
    """The last `size` durations in milliseconds, with lifetime count and total alongside."""

    __slots__ = ("_lock", "_values", "count", "total_ms")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError(f"a duration window needs room for at least 1 value, got {size}")
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0
        self.total_ms = 0.0

    def add(self, duration_ms: float) -> None:
        with self._lock:
            self._values.append(duration_ms)
            self.count += 1
            self.total_ms += duration_ms

    def summary(self) -> dict[str, Any]:
        """Mean, p50, p95 and max over the window (all 0.0 before the first value)."""
        with self._lock:
            ordered = sorted(self._values)
            count = self.count
        if not ordered:
            return {
                "count": count,
                "window": 0,
                "mean_ms": 0.0,
                "p50_ms": 0.0,
                "p95_ms": 0.0,
                "max_ms": 0.0,
            }
        return {
            "count": count,
            "window": len(ordered),
            "mean_ms": round(sum(ordered) / len(ordered), 6),
            "p50_ms": round(_percentile(ordered, 0.50), 6),
            "p95_ms": round(_percentile(ordered, 0.95), 6),
            "max_ms": round(ordered[-1], 6),
        }


@dataclass(slots=True)
class RuntimeMetrics:
    """What the engine factory reports through `metrics()`.

    One small lock guards the integer counters; it is held for a few additions, never
    around engine construction or a run, so it does not serialise creation.
    """

    window: int = DEFAULT_WINDOW
    created: int = 0
    cleaned: int = 0
    active: int = 0
    peak_concurrent: int = 0
    creation_errors: int = 0
    limit_rejections: int = 0
    capacity_rejections: int = 0
    idle_cleanups: int = 0
    timeout_cleanups: int = 0
    runs_started: int = 0
    runs_succeeded: int = 0
    runs_failed: int = 0
    runs_timed_out: int = 0
    events_sent: int = 0
    events_failed: int = 0
    creation: DurationWindow = field(init=False)
    run: DurationWindow = field(init=False)
    cleanup: DurationWindow = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.creation = DurationWindow(self.window)
        self.run = DurationWindow(self.window)
        self.cleanup = DurationWindow(self.window)

    def engine_created(self, duration_ms: float) -> None:
        with self._lock:
            self.created += 1
            self.active += 1
            if self.active > self.peak_concurrent:
                self.peak_concurrent = self.active
        self.creation.add(duration_ms)

    def engine_cleaned(
        self, duration_ms: float, *, reason: str | None, events_sent: int, events_failed: int
    ) -> None:
        """`reason` is "idle" or "expired" when the reaper reclaimed the engine."""
        with self._lock:
            self.cleaned += 1
            self.active -= 1
            self.events_sent += events_sent
            self.events_failed += events_failed
            if reason == "idle":
                self.idle_cleanups += 1
            elif reason == "expired":
                self.timeout_cleanups += 1
        self.cleanup.add(duration_ms)

    def creation_failed(self) -> None:
        with self._lock:
            self.creation_errors += 1

    def limit_rejected(self) -> None:
        with self._lock:
            self.limit_rejections += 1

    def capacity_rejected(self) -> None:
        with self._lock:
            self.capacity_rejections += 1

    def run_started(self) -> None:
        with self._lock:
            self.runs_started += 1

    def run_finished(self, duration_ms: float, *, outcome: str) -> None:
        """`outcome` is "ok", "failed" or "timeout"."""
        with self._lock:
            if outcome == "ok":
                self.runs_succeeded += 1
            elif outcome == "timeout":
                self.runs_timed_out += 1
            else:
                self.runs_failed += 1
        self.run.add(duration_ms)

    def snapshot(self, *, live_events_sent: int = 0, live_events_failed: int = 0) -> dict[str, Any]:
        """Counters and duration summaries; events of live engines are added by the caller."""
        with self._lock:
            counters: dict[str, Any] = {
                "engines_created": self.created,
                "engines_cleaned": self.cleaned,
                "engines_active": self.active,
                "peak_concurrent": self.peak_concurrent,
                "creation_errors": self.creation_errors,
                "limit_rejections": self.limit_rejections,
                "capacity_rejections": self.capacity_rejections,
                "idle_cleanups": self.idle_cleanups,
                "timeout_cleanups": self.timeout_cleanups,
                "runs_started": self.runs_started,
                "runs_succeeded": self.runs_succeeded,
                "runs_failed": self.runs_failed,
                "runs_timed_out": self.runs_timed_out,
                "events_sent": self.events_sent + live_events_sent,
                "events_failed": self.events_failed + live_events_failed,
            }
        counters["creation"] = self.creation.summary()
        counters["run"] = self.run.summary()
        counters["cleanup"] = self.cleanup.summary()
        return counters
