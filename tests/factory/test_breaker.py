"""The circuit breaker: every transition, back-off, slow calls, manual control, threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from planforge.errors import PlannerError
from planforge.factory._breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
)
from planforge.settings import load_settings


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


CONFIG = BreakerConfig(
    window_size=4,
    minimum_calls=4,
    failure_rate_threshold=0.5,
    wait_s=10.0,
    wait_multiplier=2.0,
    max_wait_s=35.0,
    permitted_calls_in_half_open=2,
)


def make(
    config: BreakerConfig = CONFIG,
) -> tuple[CircuitBreaker, FakeClock, list[BreakerTransition]]:
    clock = FakeClock()
    events: list[BreakerTransition] = []
    breaker = CircuitBreaker("planner-x", config, clock=clock, listeners=[events.append])
    return breaker, clock, events


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(4):
        assert breaker.allow()
        breaker.record_failure(0.1, "boom")


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call so mypy does not narrow the property between transitions."""
    return breaker.state


def moves(events: list[BreakerTransition]) -> list[tuple[str, str]]:
    return [(e.from_state.value, e.to_state.value) for e in events]


def test_stays_closed_until_minimum_calls() -> None:
    breaker, _, events = make()
    for _ in range(3):
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.snapshot()["failure_rate"] == 1.0
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert moves(events) == [("closed", "open")]
    assert "failure rate 100% >= 50%" in events[0].reason


def test_failure_rate_below_threshold_stays_closed_and_window_slides() -> None:
    breaker, _, _ = make()
    for outcome in (False, True, True, True, True, True, False):
        breaker.record_failure() if not outcome else breaker.record_success()
    # window (last 4): S S S F -> 25 %
    snap = breaker.snapshot()
    assert (snap["state"], snap["calls_in_window"], snap["failures_in_window"]) == (
        "closed",
        4,
        1,
    )
    breaker.record_failure()  # S S F F -> 50 %: trips
    assert state(breaker) is BreakerState.OPEN


def test_open_refuses_then_half_open_after_the_wait() -> None:
    breaker, clock, events = make()
    trip(breaker)
    assert not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(10.0)
    clock.now += 9.999
    assert not breaker.allow()
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: 1)
    assert refused.value.breaker_name == "planner-x"
    assert refused.value.retry_after_s == pytest.approx(0.001)
    assert "retry then" in str(refused.value)
    assert isinstance(refused.value, PlannerError)
    clock.now += 0.001
    assert state(breaker) is BreakerState.HALF_OPEN
    assert moves(events) == [("closed", "open"), ("open", "half_open")]
    assert breaker.snapshot()["not_permitted"] == 3


def test_half_open_admits_a_bounded_number_of_trials_then_closes_on_success() -> None:
    breaker, clock, events = make()
    trip(breaker)
    clock.now += 10.0
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()  # both trial permits are out
    assert breaker.snapshot()["half_open_permits_left"] == 0
    breaker.record_success(0.1)
    assert state(breaker) is BreakerState.HALF_OPEN  # waits for every trial outcome
    breaker.record_success(0.1)
    assert state(breaker) is BreakerState.CLOSED
    snap = breaker.snapshot()
    assert (snap["calls_in_window"], snap["consecutive_trips"], snap["trips"]) == (0, 0, 1)
    assert moves(events)[-1] == ("half_open", "closed")


def test_failed_trials_reopen_with_backoff_capped_at_max_wait() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    waits = []
    for _ in range(4):
        waits.append(breaker.retry_after_s())
        clock.now += waits[-1]  # type: ignore[operator]
        assert breaker.allow()
        assert breaker.allow()
        breaker.record_success()
        breaker.record_failure(error="still broken")  # 50 % of trials failed
        assert state(breaker) is BreakerState.OPEN
    assert waits == [10.0, 20.0, 35.0, 35.0]
    assert breaker.snapshot()["last_error"] == "still broken"
    # Recovery resets the back-off.
    clock.now += 35.0
    assert breaker.allow()
    assert breaker.allow()
    breaker.record_success()
    breaker.record_success()
    trip(breaker)
    assert breaker.retry_after_s() == 10.0


def test_outcomes_while_open_are_ignored() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    breaker.record_success()
    breaker.record_failure()
    assert breaker.snapshot()["calls_in_window"] == 0
    clock.now += 10.0
    # Half-open: an outcome nobody was permitted (a straggler) does not count as a trial.
    breaker.record_failure()
    assert state(breaker) is BreakerState.HALF_OPEN


def test_slow_calls_trip_on_their_own_rate() -> None:
    config = BreakerConfig(
        window_size=4, minimum_calls=4, slow_call_threshold_s=1.0, slow_call_rate_threshold=0.75
    )
    breaker, _, events = make(config)
    for duration in (2.0, 0.5, 2.0):
        breaker.record_success(duration)
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_success(1.0)  # exactly the threshold is not slow
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.snapshot()["slow_call_rate"] == 0.5
    breaker.record_success(1.5)  # window: fast, slow, fast(1.0), slow -> 50 %
    breaker.record_success(3.0)  # slow, fast, slow, slow -> 75 %
    assert state(breaker) is BreakerState.OPEN
    assert "slow-call rate 75%" in events[-1].reason


def test_without_a_slow_threshold_duration_never_matters() -> None:
    breaker, _, _ = make()
    for _ in range(10):
        breaker.record_success(1e6)
    assert state(breaker) is BreakerState.CLOSED


def test_force_open_refuses_until_reset() -> None:
    breaker, clock, events = make()
    breaker.force_open()
    clock.now += 1e6
    assert not breaker.allow()
    with pytest.raises(CircuitOpenError, match="forced open by an operator"):
        breaker.call(lambda: None)
    breaker.record_success()
    assert state(breaker) is BreakerState.FORCED_OPEN
    breaker.reset()
    assert breaker.allow()
    assert moves(events) == [("closed", "forced_open"), ("forced_open", "closed")]


def test_disabled_always_permits_and_never_trips() -> None:
    breaker, _, _ = make()
    breaker.disable()
    for _ in range(20):
        assert breaker.allow()
        breaker.record_failure()
    assert state(breaker) is BreakerState.DISABLED
    breaker.reset()
    assert state(breaker) is BreakerState.CLOSED


def test_reset_from_open_forgets_everything() -> None:
    breaker, _, _ = make()
    trip(breaker)
    breaker.reset()
    snap = breaker.snapshot()
    assert (snap["state"], snap["open_until"], snap["consecutive_trips"], snap["trips"]) == (
        "closed",
        None,
        0,
        1,
    )


def test_call_records_outcomes_and_passes_results_and_errors_through() -> None:
    breaker, clock, _ = make()

    def slow_add(a: int, b: int) -> int:
        clock.now += 0.25
        return a + b

    assert breaker.call(slow_add, 2, b=3) == 5

    def fail() -> None:
        raise ValueError("bad plan")

    with pytest.raises(ValueError, match="bad plan"):
        breaker.call(fail)
    snap = breaker.snapshot()
    assert (snap["calls_in_window"], snap["failures_in_window"]) == (2, 1)
    assert "bad plan" in snap["last_error"]


class Cancelled(BaseException):
    pass


def test_interrupted_trial_gives_its_permit_back() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    clock.now += 10.0
    with pytest.raises(Cancelled), breaker.guard():
        raise Cancelled
    assert breaker.snapshot()["half_open_permits_left"] == 2
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    assert state(breaker) is BreakerState.CLOSED


def test_a_failing_listener_does_not_break_the_breaker() -> None:
    breaker, _, events = make()

    def broken(_: BreakerTransition) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    trip(breaker)
    assert state(breaker) is BreakerState.OPEN
    assert len(events) == 1
    breaker.remove_listener(broken)
    breaker.remove_listener(broken)  # removing twice is harmless


def test_window_memory_is_bounded() -> None:
    config = BreakerConfig(window_size=16, minimum_calls=16, failure_rate_threshold=1.0)
    breaker, _, _ = make(config)
    for i in range(10_000):
        breaker.record_failure() if i % 3 == 0 else breaker.record_success()
    assert breaker.snapshot()["calls_in_window"] == 16
    assert breaker._window.maxlen == 16


def test_concurrent_records_are_counted_exactly() -> None:
    config = BreakerConfig(window_size=10_000, minimum_calls=10_000, failure_rate_threshold=1.0)
    breaker, _, _ = make(config)
    start = threading.Barrier(8)

    def work(index: int) -> None:
        start.wait()
        for _ in range(1000):
            assert breaker.allow()
            if index % 2:
                breaker.record_failure(0.01)
            else:
                breaker.record_success(0.01)
            breaker.snapshot()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = breaker.snapshot()
    assert (snap["calls_in_window"], snap["failures_in_window"]) == (8000, 4000)


def test_concurrent_half_open_hands_out_exactly_the_permitted_trials() -> None:
    config = BreakerConfig(
        window_size=4, minimum_calls=4, wait_s=10.0, permitted_calls_in_half_open=3
    )
    breaker, clock, events = make(config)
    trip(breaker)
    clock.now += 10.0
    start = threading.Barrier(8)
    granted: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        start.wait()
        for _ in range(50):
            permitted = breaker.allow()
            with lock:
                granted.append(permitted)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 3
    assert moves(events).count(("open", "half_open")) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_size", 0),
        ("minimum_calls", True),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("slow_call_rate_threshold", float("nan")),
        ("wait_s", 0.0),
        ("wait_multiplier", 0.5),
        ("max_wait_s", 1.0),  # below wait_s
        ("slow_call_threshold_s", -1.0),
        ("permitted_calls_in_half_open", 0),
    ],
)
def test_bad_config_is_refused(field: str, value: Any) -> None:
    with pytest.raises(PlannerError, match=f"BreakerConfig.{field}"):
        BreakerConfig(**{field: value})


@pytest.mark.parametrize("duration", [-1.0, float("nan"), "1"])
def test_bad_duration_is_refused_and_changes_nothing(duration: Any) -> None:
    breaker, _, _ = make()
    with pytest.raises(PlannerError, match="duration"):
        breaker.record_success(duration)
    assert breaker.snapshot()["calls_in_window"] == 0


def test_bad_name_is_refused() -> None:
    with pytest.raises(PlannerError, match="non-empty name"):
        CircuitBreaker("")


def test_config_from_settings() -> None:
    settings = load_settings(
        breaker_window=50, breaker_min_calls=10, breaker_failure_rate=0.3, breaker_open_s=5.0
    )
    config = BreakerConfig.from_settings(settings, permitted_calls_in_half_open=1)
    assert (config.window_size, config.minimum_calls, config.failure_rate_threshold) == (
        50,
        10,
        0.3,
    )
    assert (config.wait_s, config.max_wait_s, config.permitted_calls_in_half_open) == (
        5.0,
        50.0,
        1,
    )


def test_minimum_calls_above_window_size_evaluates_a_full_window() -> None:
    breaker, _, _ = make(BreakerConfig(window_size=3, minimum_calls=10))
    for _ in range(3):
        breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN


def test_a_refusal_is_the_package_wide_error_with_the_breaker_state() -> None:
    import planforge
    import planforge.errors

    breaker, _clock, _events = make()
    trip(breaker)
    with pytest.raises(planforge.CircuitOpenError) as refused:
        breaker.call(lambda: 1)
    assert planforge.CircuitOpenError is planforge.errors.CircuitOpenError is CircuitOpenError
    assert refused.value.state is BreakerState.OPEN
    assert refused.value.context["state"] == "open"
    assert str(refused.value).startswith("Circuit breaker 'planner-x' is open.")
