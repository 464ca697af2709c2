"""The registry's records and generations.

A generation is an immutable snapshot of what discovery found, with the ranking index built
for it on first selection (building it stems every planner's terms: a warm `discover()` that
never selects should not pay for it). Readers take the current generation without a lock and
see a consistent picture; a reload builds a new generation and swaps it in under the state
lock.

A planner's reliability, breaker and statistics follow its name across generations and are
made on first use (`PlannerVitals`): listing or describing one planner touches no other's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from planforge.contract import Planner, PlannerSpec
from planforge.factory._breaker import BreakerConfig, BreakerState, CircuitBreaker
from planforge.factory._discovery import DiscoveryResult
from planforge.factory._ranking import RankingIndex
from planforge.factory._reliability import DecayingReliability
from planforge.factory._telemetry import PlannerStats

if TYPE_CHECKING:
    from planforge.settings import FactorySettings

__all__ = ["SELECTABLE", "Generation", "PlannerRecord", "PlannerVitals", "RecordStatus"]


class RecordStatus(StrEnum):
    """What a planner is, as listed: `active` once the sandbox has passed it (or when nothing
    is to be checked), `unchecked` before (still selectable: it is checked on first use),
    `quarantined`, `not_allowed` or `failed`."""

    ACTIVE = "active"
    UNCHECKED = "unchecked"
    QUARANTINED = "quarantined"
    NOT_ALLOWED = "not_allowed"
    FAILED = "failed"

    @property
    def selectable(self) -> bool:
        """Whether selection may pick a planner with this status."""
        return self in (RecordStatus.ACTIVE, RecordStatus.UNCHECKED)


class PlannerVitals:
    """Each planner name's reliability, breaker and stats, made on first use; thread-safe.

    They outlive generations. A reliability is made again when the declared prior changes.
    """

    def __init__(self, settings: FactorySettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._breaker_config = BreakerConfig.from_settings(settings)
        self._lock = threading.Lock()
        self._reliability: dict[str, DecayingReliability] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stats: dict[str, PlannerStats] = {}

    def reliability(self, spec: PlannerSpec) -> DecayingReliability:
        declared = spec.reliability_score
        prior = declared if declared is not None else self._settings.default_reliability
        found = self._reliability.get(spec.name)
        if found is not None and found.prior == prior:
            return found
        with self._lock:
            found = self._reliability.get(spec.name)
            if found is None or found.prior != prior:
                found = DecayingReliability(
                    prior=prior,
                    prior_weight=self._settings.reliability_prior_weight,
                    half_life_s=self._settings.reliability_half_life_s,
                    clock=self._clock,
                )
                self._reliability[spec.name] = found
            return found

    def breaker(self, name: str) -> CircuitBreaker:
        found = self._breakers.get(name)
        if found is None:
            with self._lock:
                found = self._breakers.get(name)
                if found is None:
                    found = CircuitBreaker(name, self._breaker_config, clock=self._clock)
                    self._breakers[name] = found
        return found

    def stats(self, name: str) -> PlannerStats:
        found = self._stats.get(name)
        if found is None:
            with self._lock:
                found = self._stats.setdefault(
                    name, PlannerStats(window=self._settings.stats_window)
                )
        return found

    def breaker_exclusion(self, name: str) -> str | None:
        """Why the planner's breaker refuses calls now, or None (a breaker never made is closed)."""
        breaker = self._breakers.get(name)
        if breaker is None or breaker.state not in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            return None
        retry = breaker.retry_after_s()
        when = f" (retry in {retry:.1f} s)" if retry is not None else ""
        return f"circuit breaker {breaker.state}{when}"


#: the statuses selection may pick (`RecordStatus.selectable`), for loops over many records
SELECTABLE = frozenset((RecordStatus.ACTIVE, RecordStatus.UNCHECKED))


class PlannerRecord:
    """One planner's mutable state within a generation.

    `sandbox_checked` says the sandbox passed it in this process; `sandbox_passed_at` when the
    sandbox last passed this very source file, in this process or another.

    Reliability, breaker and stats outlive a generation (they follow the planner's name);
    the class and instance belong to the generation that built them.

    A plain class whose defaults live on the class: a warm start makes hundreds of records
    and sets only what differs (a dataclass would write every field of every record).
    """

    status: RecordStatus = RecordStatus.ACTIVE
    status_reason: str | None = None
    cls: type[Planner] | None = None
    instance: Planner | None = None
    sandbox_checked: bool = False
    sandbox_passed_at: float | None = None
    self_test_passed: bool | None = None
    instantiated_at: float | None = None
    instantiation_ms: float | None = None
    last_access: float | None = None
    error: str | None = None

    def __init__(self, spec: PlannerSpec, vitals: PlannerVitals) -> None:
        self.spec = spec
        self.vitals = vitals
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reliability(self) -> DecayingReliability:
        return self.vitals.reliability(self.spec)

    @property
    def breaker(self) -> CircuitBreaker:
        return self.vitals.breaker(self.spec.name)

    @property
    def stats(self) -> PlannerStats:
        return self.vitals.stats(self.spec.name)

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "status": str(self.status),
            "status_reason": self.status_reason,
            "reliability": round(self.reliability.value(), 6),
            "instantiated": self.instance is not None,
            "instantiated_at": self.instantiated_at,
            "instantiation_ms": self.instantiation_ms,
            "sandbox_checked": self.sandbox_checked,
            "sandbox_passed_at": self.sandbox_passed_at,
            "self_test_passed": self.self_test_passed,
            "last_access": self.last_access,
            "error": self.error,
            "breaker": self.breaker.snapshot(),
            "stats": self.stats.summary(),
        }


@dataclass(slots=True, eq=False)
class Generation:
    """Everything one discovery pass produced; `instances` is the lock-free read path."""

    number: int
    records: dict[str, PlannerRecord]
    #: builds the ranking index on first use; called under the factory's state lock
    index_builder: Callable[[Generation], RankingIndex]
    discovery: DiscoveryResult | None
    instances: dict[str, Planner] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    #: the context kinds the active planners declare, sorted ("any" left out)
    context_kinds: tuple[str, ...] = ()
    built_index: RankingIndex | None = None

    @property
    def index(self) -> RankingIndex:
        """The ranking index of this generation, built on first use."""
        index = self.built_index
        if index is None:
            index = self.index_builder(self)
        return index

    def exclude(self, name: str, reason: str | None) -> None:
        """Exclude a planner from selection (None: readmit it); an index not built yet reads
        the records' state when it is built, so it needs no word."""
        index = self.built_index
        if index is not None:
            index.set_excluded(name, reason)

    def selectable_names(self) -> list[str]:
        """Active and unchecked planners: the ones selection may pick."""
        return sorted(name for name, record in self.records.items() if record.status in SELECTABLE)
