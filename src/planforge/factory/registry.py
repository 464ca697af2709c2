"""The registry's records and generations.

A generation is an immutable snapshot of what discovery found, with the ranking index built
for it. Readers take the current generation without a lock and see a consistent picture;
a reload builds a new generation and swaps it in under the state lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from planforge.contract import Planner, PlannerSpec
from planforge.factory.breaker import CircuitBreaker
from planforge.factory.discovery import DiscoveryResult
from planforge.factory.ranking import RankingIndex
from planforge.factory.reliability import DecayingReliability
from planforge.factory.telemetry import PlannerStats

__all__ = ["Generation", "PlannerRecord", "RecordStatus"]


class RecordStatus(StrEnum):
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    NOT_ALLOWED = "not_allowed"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class PlannerRecord:
    """One planner's mutable state within a generation.

    Reliability, breaker and stats outlive a generation (they follow the planner's name);
    the class and instance belong to the generation that built them.
    """

    spec: PlannerSpec
    reliability: DecayingReliability
    breaker: CircuitBreaker
    stats: PlannerStats
    status: RecordStatus = RecordStatus.ACTIVE
    status_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    cls: type[Planner] | None = None
    instance: Planner | None = None
    sandbox_checked: bool = False
    self_test_passed: bool | None = None
    instantiated_at: float | None = None
    instantiation_ms: float | None = None
    last_access: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

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
    index: RankingIndex
    discovery: DiscoveryResult | None
    instances: dict[str, Planner] = field(default_factory=dict)
    created_at: float = 0.0
    #: the context kinds the active planners declare, sorted ("any" left out)
    context_kinds: tuple[str, ...] = ()

    def active_names(self) -> list[str]:
        return sorted(
            name for name, record in self.records.items() if record.status is RecordStatus.ACTIVE
        )
