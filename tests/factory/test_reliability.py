"""Decaying reliability: a declared prior, updated by outcomes that fade with a half-life."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from planforge.errors import PlannerError
from planforge.factory import DecayingReliability
from planforge.settings import load_settings


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_starts_at_the_prior() -> None:
    assert DecayingReliability(0.8, clock=FakeClock()).value() == pytest.approx(0.8)


def test_prior_half_with_weight_two_is_laplace() -> None:
    reliability = DecayingReliability(0.5, prior_weight=2.0, clock=FakeClock())
    for outcome in (True, True, True, False):
        reliability.record(outcome)
    assert reliability.value() == pytest.approx((3 + 1) / (3 + 1 + 2))
    assert reliability.observations() == (3.0, 1.0)


def test_outcomes_halve_every_half_life_and_value_returns_to_the_prior() -> None:
    clock = FakeClock()
    reliability = DecayingReliability(0.9, prior_weight=2.0, half_life_s=900.0, clock=clock)
    for _ in range(8):
        reliability.record(False)
    low = reliability.value()
    assert low == pytest.approx(1.8 / 10.0)
    clock.now += 900.0
    assert reliability.observations() == pytest.approx((0.0, 4.0))
    assert reliability.value() == pytest.approx(1.8 / 6.0)
    clock.now += 900.0 * 60
    assert reliability.value() == pytest.approx(0.9, abs=1e-9)


def test_failure_streak_drops_below_min_reliability() -> None:
    settings = load_settings()
    reliability = DecayingReliability.from_settings(settings, 0.9, clock=FakeClock())
    failures = 0
    while reliability.value() >= settings.min_reliability:
        reliability.record(False)
        failures += 1
    # (2 * 0.9) / (f + 2) < 0.25  <=>  f > 5.2
    assert failures == 6


def test_successes_lift_an_undeclared_planner_over_the_minimum() -> None:
    settings = load_settings()
    reliability = DecayingReliability.from_settings(settings, None, clock=FakeClock())
    assert reliability.prior == settings.default_reliability == 0.1
    assert reliability.value() < settings.min_reliability
    assert reliability.record(True) == pytest.approx(1.2 / 3.0)
    assert reliability.value() > settings.min_reliability


def test_settings_choose_weight_and_half_life() -> None:
    settings = load_settings(reliability_prior_weight=4.0, reliability_half_life_s=60.0)
    clock = FakeClock()
    reliability = DecayingReliability.from_settings(settings, 0.5, clock=clock)
    reliability.record(True)
    assert reliability.value() == pytest.approx((1 + 2) / (1 + 4))
    clock.now += 60.0
    assert reliability.observations() == pytest.approx((0.5, 0.0))


def test_a_clock_stepping_back_does_not_inflate_weights() -> None:
    clock = FakeClock()
    reliability = DecayingReliability(0.5, clock=clock)
    reliability.record(True)
    clock.now -= 500.0
    assert reliability.observations() == (1.0, 0.0)
    clock.now += 500.0 + 900.0
    assert reliability.observations() == pytest.approx((0.5, 0.0))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prior": 1.5}, "prior"),
        ({"prior": float("nan")}, "prior"),
        ({"prior": True}, "prior"),
        ({"prior": 0.5, "prior_weight": 0.0}, "prior_weight"),
        ({"prior": 0.5, "half_life_s": -1.0}, "half_life_s"),
        ({"prior": 0.5, "half_life_s": float("inf")}, "half_life_s"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PlannerError, match=fragment):
        DecayingReliability(**kwargs)


def test_bad_outcome_is_refused_and_changes_nothing() -> None:
    reliability = DecayingReliability(0.5, clock=FakeClock())
    with pytest.raises(PlannerError, match="True"):
        reliability.record("yes")  # type: ignore[arg-type]
    assert reliability.observations() == (0.0, 0.0)


def test_to_dict_reports_the_decayed_state() -> None:
    clock = FakeClock()
    reliability = DecayingReliability(0.5, clock=clock)
    reliability.record(True)
    clock.now += 900.0
    data = reliability.to_dict()
    assert data == pytest.approx(
        {
            "value": (0.5 + 1.0) / (0.5 + 2.0),
            "prior": 0.5,
            "prior_weight": 2.0,
            "half_life_s": 900.0,
            "successes": 0.5,
            "failures": 0.0,
        }
    )
    assert "value=0.6" in repr(reliability)


def test_concurrent_records_are_all_counted() -> None:
    reliability = DecayingReliability(0.5, clock=FakeClock())
    start = threading.Barrier(8)

    def work(success: bool) -> None:
        start.wait()
        for _ in range(2000):
            reliability.record(success)
            reliability.value()

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reliability.observations() == (8000.0, 8000.0)
