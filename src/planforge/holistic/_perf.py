"""Per module and operation timings: how often, how long, and the slow tail.

`count`, `total`, `mean`, `min`, `max` and `errors` cover every call since the tracker was made
(running sums, constant memory); the percentiles `p50` and `p95` come from the last `window`
samples (a bounded deque), so a long-lived tracker reports the recent tail. The number of
(module, operation) keys is bounded too: calls for keys beyond `max_keys` are counted in
`dropped_keys` and otherwise ignored.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from planforge.errors import PlannerError

__all__ = ["OperationStats", "PerformanceTracker"]


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Timings of one (module, operation), in milliseconds."""

    module: str
    operation: str
    count: int
    errors: int
    total_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "operation": self.operation,
            "count": self.count,
            "errors": self.errors,
            "total_ms": self.total_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


class _Series:
    __slots__ = ("count", "errors", "max", "min", "samples", "total")

    def __init__(self, window: int) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0
        self.samples: deque[float] = deque(maxlen=window)

    def add(self, duration_s: float, failed: bool) -> None:
        self.count += 1
        self.errors += failed
        self.total += duration_s
        self.min = min(self.min, duration_s)
        self.max = max(self.max, duration_s)
        self.samples.append(duration_s)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (a value that was really observed)."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class PerformanceTracker:
    """Thread-safe; `clock` is a monotonic seconds clock (inject one in tests)."""

    def __init__(
        self,
        *,
        window: int = 1024,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        for label, value in (("window", window), ("max_keys", max_keys)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlannerError(
                    f"PerformanceTracker {label} must be an integer >= 1, got {value!r}.",
                    where="perf",
                )
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._dropped = 0

    def record(
        self, module: str, operation: str, duration_s: float, *, failed: bool = False
    ) -> None:
        if not math.isfinite(duration_s) or duration_s < 0.0:
            raise PlannerError(
                f"a duration must be a finite number of seconds >= 0, got {duration_s!r}.",
                where="perf",
                context={"module": module, "operation": operation},
            )
        key = (module, operation)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self._max_keys:
                    self._dropped += 1
                    return
                series = self._series[key] = _Series(self._window)
            series.add(duration_s, failed)

    @contextmanager
    def measure(self, module: str, operation: str) -> Iterator[None]:
        """Time the block; a block that raises is recorded as an error, then re-raised."""
        start = self._clock()
        failed = True
        try:
            yield
            failed = False
        finally:
            self.record(module, operation, max(0.0, self._clock() - start), failed=failed)

    def stats(self, module: str, operation: str) -> OperationStats | None:
        with self._lock:
            series = self._series.get((module, operation))
            if series is None:
                return None
            return self._stats(module, operation, series)

    @staticmethod
    def _stats(module: str, operation: str, series: _Series) -> OperationStats:
        ordered = sorted(series.samples)
        ms = 1000.0
        return OperationStats(
            module=module,
            operation=operation,
            count=series.count,
            errors=series.errors,
            total_ms=series.total * ms,
            mean_ms=series.total / series.count * ms,
            min_ms=series.min * ms,
            max_ms=series.max * ms,
            p50_ms=_percentile(ordered, 0.50) * ms,
            p95_ms=_percentile(ordered, 0.95) * ms,
        )

    def all_stats(self) -> list[OperationStats]:
        """Every key's stats, sorted by (module, operation)."""
        with self._lock:
            items = sorted(self._series.items())
            return [self._stats(module, op, series) for (module, op), series in items]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """`{"module.operation": {...}}` in sorted key order, JSON-friendly."""
        return {f"{s.module}.{s.operation}": s.to_dict() for s in self.all_stats()}

    def report(self) -> str:
        """One line per key, sorted, for logs and the CLI."""
        lines = []
        for s in self.all_stats():
            calls = "call" if s.count == 1 else "calls"
            line = (
                f"{s.module}.{s.operation}: {s.count} {calls}, avg {s.mean_ms:.3f} ms, "
                f"total {s.total_ms:.3f} ms, min {s.min_ms:.3f} ms, max {s.max_ms:.3f} ms, "
                f"p50 {s.p50_ms:.3f} ms, p95 {s.p95_ms:.3f} ms"
            )
            if s.errors:
                line += f", {s.errors} failed"
            lines.append(line)
        return "\n".join(lines)

    @property
    def dropped_keys(self) -> int:
        """Calls ignored because `max_keys` distinct keys were already tracked."""
        with self._lock:
            return self._dropped

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self._dropped = 0
