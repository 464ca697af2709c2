from __future__ import annotations

import threading

import pytest

from planforge.errors import PlannerError
from planforge.holistic import PerformanceTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stats_cover_count_total_mean_min_max_and_percentiles() -> None:
    tracker = PerformanceTracker()
    for ms in range(1, 101):  # 1 ms .. 100 ms
        tracker.record("profit_taking", "calculate", ms / 1000.0)
    stats = tracker.stats("profit_taking", "calculate")
    assert stats is not None
    assert stats.count == 100
    assert stats.total_ms == pytest.approx(5050.0)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.max_ms == pytest.approx(100.0)
    assert stats.p50_ms == pytest.approx(50.0)
    assert stats.p95_ms == pytest.approx(95.0)
    assert tracker.stats("profit_taking", "other") is None


def test_percentiles_use_the_recent_window_while_totals_cover_everything() -> None:
    tracker = PerformanceTracker(window=4)
    for seconds in (10.0, 10.0, 10.0, 10.0, 0.001, 0.001, 0.001, 0.001):
        tracker.record("m", "op", seconds)
    stats = tracker.stats("m", "op")
    assert stats is not None
    assert stats.count == 8
    assert stats.max_ms == pytest.approx(10_000.0)
    assert stats.p95_ms == pytest.approx(1.0)  # the slow calls left the window


def test_measure_times_the_block_and_records_a_failure_before_reraising() -> None:
    clock = FakeClock()
    tracker = PerformanceTracker(clock=clock)
    with tracker.measure("filters.diversity", "apply"):
        clock.now += 0.25

    def failing_block() -> None:
        with tracker.measure("filters.diversity", "apply"):
            clock.now += 0.75
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_block()
    stats = tracker.stats("filters.diversity", "apply")
    assert stats is not None
    assert (stats.count, stats.errors) == (2, 1)
    assert stats.total_ms == pytest.approx(1000.0)


def test_snapshot_and_report_are_sorted_and_readable() -> None:
    tracker = PerformanceTracker()
    tracker.record("zeta", "apply", 0.002)
    tracker.record("alpha", "generate", 0.001)
    tracker.record("alpha", "calculate", 0.003)
    tracker.record("alpha", "calculate", 0.001, failed=True)
    assert list(tracker.snapshot()) == ["alpha.calculate", "alpha.generate", "zeta.apply"]
    assert tracker.snapshot()["alpha.calculate"]["count"] == 2
    lines = tracker.report().splitlines()
    assert lines[0].startswith("alpha.calculate: 2 calls, avg 2.000 ms, total 4.000 ms")
    assert lines[0].endswith("1 failed")
    assert lines[1].startswith("alpha.generate: 1 call, avg 1.000 ms")
    assert "p95 2.000 ms" in lines[2]


def test_keys_are_bounded_and_overflow_is_counted() -> None:
    tracker = PerformanceTracker(max_keys=2)
    tracker.record("a", "x", 0.1)
    tracker.record("b", "x", 0.1)
    tracker.record("c", "x", 0.1)
    tracker.record("a", "x", 0.1)  # known keys still count
    assert list(tracker.snapshot()) == ["a.x", "b.x"]
    assert tracker.dropped_keys == 1
    tracker.reset()
    assert tracker.snapshot() == {}
    assert tracker.report() == ""


def test_concurrent_records_are_all_counted() -> None:
    tracker = PerformanceTracker()

    def work() -> None:
        for _ in range(500):
            tracker.record("m", "op", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = tracker.stats("m", "op")
    assert stats is not None
    assert stats.count == 2000


def test_bad_durations_and_bounds_are_rejected() -> None:
    tracker = PerformanceTracker()
    with pytest.raises(PlannerError, match="finite"):
        tracker.record("m", "op", -1.0)
    with pytest.raises(PlannerError, match="finite"):
        tracker.record("m", "op", float("nan"))
    with pytest.raises(PlannerError, match="window"):
        PerformanceTracker(window=0)
