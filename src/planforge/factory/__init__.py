"""The factory layer: discovery, sandbox, ranking, registry, telemetry and `PlannerFactory`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    # the plugin engine, for every plugin group (the holistic modules use it too)
    "PluginGroup": "planforge.factory._plugins",
    "PluginProblem": "planforge.factory._plugins",
    "PluginScan": "planforge.factory._plugins",
    "import_file": "planforge.factory._plugins",
    "settle_duplicates": "planforge.factory._plugins",
    "NOT_LITERAL": "planforge.factory._reader",
    "SourceClass": "planforge.factory._reader",
    "read_source": "planforge.factory._reader",
    "EntryPoint": "planforge.factory.entrypoints",
}

__all__ = [
    "NOT_LITERAL",
    "BreakerConfig",
    "BreakerState",
    "BreakerTransition",
    "Candidate",
    "CircuitBreaker",
    "DecayingReliability",
    "EntryPoint",
    "Exclusion",
    "PlannerFactory",
    "PlannerStats",
    "PluginGroup",
    "PluginProblem",
    "PluginScan",
    "ProfileRing",
    "RankingIndex",
    "RankingWeights",
    "RecordStatus",
    "ScoreBreakdown",
    "Selection",
    "SelectionRequest",
    "SourceClass",
    "default_factory",
    "import_file",
    "rank",
    "read_source",
    "set_default_factory",
    "settle_duplicates",
]


def __getattr__(name: str) -> Any:
    module = _FACADE_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'planforge.factory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from planforge.factory._plugins import (
        PluginGroup,
        PluginProblem,
        PluginScan,
        import_file,
        settle_duplicates,
    )
    from planforge.factory._reader import NOT_LITERAL, SourceClass, read_source
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
