"""The factory layer: discovery, sandbox, ranking, registry, telemetry and `PlannerFactory`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# -- the facade, selection, reliability and breakers --------------------------------------
# Imported on first use (PEP 562): a sandbox child imports `planforge.factory.sandbox_child`,
# and the CLI some factory modules, without paying for the rest of the factory.
_FACADE_EXPORTS: dict[str, str] = {
    "PlannerFactory": "planforge.factory.core",
    "default_factory": "planforge.factory.default",
    "set_default_factory": "planforge.factory.default",
    "Candidate": "planforge.factory.ranking",
    "Exclusion": "planforge.factory.ranking",
    "RankingIndex": "planforge.factory.ranking",
    "RankingWeights": "planforge.factory.ranking",
    "ScoreBreakdown": "planforge.factory.ranking",
    "Selection": "planforge.factory.ranking",
    "SelectionRequest": "planforge.factory.ranking",
    "rank": "planforge.factory.ranking",
    "BreakerConfig": "planforge.factory.breaker",
    "BreakerState": "planforge.factory.breaker",
    "BreakerTransition": "planforge.factory.breaker",
    "CircuitBreaker": "planforge.factory.breaker",
    "DecayingReliability": "planforge.factory.reliability",
    "PlannerStats": "planforge.factory.telemetry",
    "ProfileRing": "planforge.factory.telemetry",
    "RecordStatus": "planforge.factory.registry",
}

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "BreakerTransition",
    "Candidate",
    "CircuitBreaker",
    "DecayingReliability",
    "Exclusion",
    "PlannerFactory",
    "PlannerStats",
    "ProfileRing",
    "RankingIndex",
    "RankingWeights",
    "RecordStatus",
    "ScoreBreakdown",
    "Selection",
    "SelectionRequest",
    "default_factory",
    "rank",
    "set_default_factory",
]


def __getattr__(name: str) -> Any:
    module = _FACADE_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'planforge.factory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from planforge.factory.breaker import (
        BreakerConfig,
        BreakerState,
        BreakerTransition,
        CircuitBreaker,
    )
    from planforge.factory.core import PlannerFactory
    from planforge.factory.default import default_factory, set_default_factory
    from planforge.factory.ranking import (
        Candidate,
        Exclusion,
        RankingIndex,
        RankingWeights,
        ScoreBreakdown,
        Selection,
        SelectionRequest,
        rank,
    )
    from planforge.factory.registry import RecordStatus
    from planforge.factory.reliability import DecayingReliability
    from planforge.factory.telemetry import PlannerStats, ProfileRing
