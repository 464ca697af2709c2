"""A planner's observed reliability: a declared prior updated by decaying plan outcomes.

    value = (s + k * prior) / (s + f + k)

`s` and `f` are success and failure weights that halve every `half_life_s` seconds, so old
outcomes fade and the value drifts back to the prior when a planner is not used. With prior
0.5 and k = 2 this is exactly the original factory's Laplace rule (s + 1) / (s + f + 2). A
planner that declares nothing starts at the default prior (0.1, below the 0.25 minimum) and
earns its way in with successes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from planforge.errors import PlannerError

if TYPE_CHECKING:
    from planforge.settings import FactorySettings

__all__ = ["DecayingReliability"]


def _check(name: str, value: Any, *, low: float, high: float, open_low: bool) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
        and value <= high
    )
    if not ok:
        bound = "(" if open_low else "["
        raise PlannerError(
            f"{name} must be a number in {bound}{low:g}, {high:g}], got {value!r}.",
            where="reliability",
            context={name: value},
        )
    return float(value)


class DecayingReliability:
    """Thread-safe: every read and write takes a small lock (decay mutates state on reads)."""

    __slots__ = ("_clock", "_failures", "_half_life_s", "_last", "_lock", "_successes",
                 "prior", "prior_weight")  # fmt: skip

    def __init__(
        self,
        prior: float,
        prior_weight: float = 2.0,
        half_life_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prior = _check("prior", prior, low=0.0, high=1.0, open_low=False)
        self.prior_weight = _check("prior_weight", prior_weight, low=0.0, high=1e9, open_low=True)
        self._half_life_s = _check("half_life_s", half_life_s, low=0.0, high=1e12, open_low=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._successes = 0.0
        self._failures = 0.0
        self._last = clock()

    @classmethod
    def from_settings(
        cls,
        settings: FactorySettings,
        declared: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> DecayingReliability:
        """The declared `reliability_score` as prior, or the settings' default when undeclared."""
        return cls(
            prior=settings.default_reliability if declared is None else declared,
            prior_weight=settings.reliability_prior_weight,
            half_life_s=settings.reliability_half_life_s,
            clock=clock,
        )

    @property
    def half_life_s(self) -> float:
        return self._half_life_s

    def _decay(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0.0:  # a clock that steps back decays nothing rather than growing weights
            factor = 0.5 ** (elapsed / self._half_life_s)
            self._successes *= factor
            self._failures *= factor
            self._last = now

    def record(self, success: bool) -> float:
        """Add one outcome (weight 1, decaying from now) and return the new value."""
        if not isinstance(success, bool):
            raise PlannerError(
                f"record() takes True (plan succeeded) or False (plan failed), got {success!r}.",
                where="reliability",
            )
        with self._lock:
            self._decay()
            if success:
                self._successes += 1.0
            else:
                self._failures += 1.0
            return self._value()

    def _value(self) -> float:
        k = self.prior_weight
        return (self._successes + k * self.prior) / (self._successes + self._failures + k)

    def value(self) -> float:
        with self._lock:
            self._decay()
            return self._value()

    def observations(self) -> tuple[float, float]:
        """Decayed (success weight, failure weight) as of now."""
        with self._lock:
            self._decay()
            return self._successes, self._failures

    def to_dict(self) -> dict[str, float]:
        with self._lock:
            self._decay()
            return {
                "value": self._value(),
                "prior": self.prior,
                "prior_weight": self.prior_weight,
                "half_life_s": self._half_life_s,
                "successes": self._successes,
                "failures": self._failures,
            }

    def __repr__(self) -> str:
        data = self.to_dict()
        return (
            f"DecayingReliability(value={data['value']:.4f}, prior={self.prior:g}, "
            f"s={data['successes']:.3f}, f={data['failures']:.3f})"
        )
