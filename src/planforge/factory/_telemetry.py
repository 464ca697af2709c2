"""Bounded telemetry: ring buffers of profiles and per-planner duration statistics.

Nothing here grows without a bound: profiles live in fixed-size rings and duration samples in
fixed-size windows, both sized from settings.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PlannerStats", "ProfileRing", "percentile"]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[rank]


class ProfileRing:
    """A thread-safe ring of JSON-friendly profile dicts; the oldest fall out."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a profile ring needs a capacity of at least 1")
        self._items: deque[Mapping[str, Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._total = 0

    @property
    def capacity(self) -> int:
        return self._items.maxlen or 0

    @property
    def total_recorded(self) -> int:
        """How many profiles were ever recorded, including those that fell out."""
        return self._total

    def append(self, profile: Mapping[str, Any]) -> None:
        with self._lock:
            self._items.append(profile)
            self._total += 1

    def extend(self, profiles: Iterable[Mapping[str, Any]]) -> None:
        for profile in profiles:
            self.append(profile)

    def snapshot(self, last: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._items)
        if last is not None:
            items = items[-last:] if last > 0 else []
        return [dict(item) for item in items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class PlannerStats:
    """Invocations, failures and a bounded window of durations for one planner."""

    window: int
    invocations: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration_ms: float | None = None
    _durations: deque[float] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._durations = deque(maxlen=self.window)

    def record(self, duration_ms: float, *, ok: bool, error: str | None = None) -> None:
        with self._lock:
            self.invocations += 1
            if not ok:
                self.failures += 1
                self.last_error = error
            self.last_duration_ms = duration_ms
            self._durations.append(duration_ms)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            durations = sorted(self._durations)
            invocations, failures = self.invocations, self.failures
            last_error = self.last_error
        mean = sum(durations) / len(durations) if durations else 0.0
        return {
            "invocations": invocations,
            "failures": failures,
            "mean_ms": round(mean, 3),
            "p50_ms": round(percentile(durations, 0.50), 3),
            "p95_ms": round(percentile(durations, 0.95), 3),
            "samples": len(durations),
            "last_error": last_error,
        }
