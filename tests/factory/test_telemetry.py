from __future__ import annotations

import threading

import pytest

from planforge.factory._telemetry import PlannerStats, ProfileRing, percentile


def test_ring_keeps_only_the_newest_profiles() -> None:
    ring = ProfileRing(3)
    for number in range(10):
        ring.append({"n": number})
    assert [item["n"] for item in ring.snapshot()] == [7, 8, 9]
    assert ring.snapshot(last=2) == [{"n": 8}, {"n": 9}]
    assert ring.total_recorded == 10
    assert len(ring) == 3


def test_ring_stays_bounded_under_concurrent_writers() -> None:
    ring = ProfileRing(50)

    def write() -> None:
        for number in range(1000):
            ring.append({"n": number})

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ring) == 50
    assert ring.total_recorded == 8000


def test_ring_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ProfileRing(0)


def test_stats_summarise_a_bounded_window() -> None:
    stats = PlannerStats(window=4)
    for duration in (10.0, 20.0, 30.0, 40.0, 50.0):
        stats.record(duration, ok=True)
    stats.record(60.0, ok=False, error="boom")
    summary = stats.summary()
    assert summary["invocations"] == 6
    assert summary["failures"] == 1
    assert summary["samples"] == 4
    assert summary["mean_ms"] == pytest.approx(45.0)
    assert summary["last_error"] == "boom"
    assert summary["p95_ms"] == 60.0


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
