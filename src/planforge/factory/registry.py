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


@dataclass(slots=True, eq=False)
class PlannerRecord:
    """One planner's mutable state within a generation.

    `sandbox_checked` says the sandbox passed it in this process; `sandbox_passed_at` when the
    sandbox last passed this very source file, in this process or another.

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
    sandbox_passed_at: float | None = None
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
    index: RankingIndex
    discovery: DiscoveryResult | None
    instances: dict[str, Planner] = field(default_factory=dict)
    created_at: float = 0.0
    #: the context kinds the active planners declare, sorted ("any" left out)
    context_kinds: tuple[str, ...] = ()

    def selectable_names(self) -> list[str]:
        """Active and unchecked planners: the ones selection may pick."""
        return sorted(name for name, record in self.records.items() if record.status.selectable)
