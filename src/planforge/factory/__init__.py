"""The factory layer: discovery, sandbox, ranking, registry, telemetry and `PlannerFactory`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge._lazy import lazy_exports

# Imported on first use (PEP 562): a sandbox child imports `planforge.factory._sandbox_child`,
# and the CLI some factory modules, without paying for the rest of the factory.
_FACADE_EXPORTS: dict[str, str] = {
    "PlannerFactory": "planforge.factory._core",
    "default_factory": "planforge.factory._default",
    "set_default_factory": "planforge.factory._default",
    "Candidate": "planforge.factory._ranking",
    "Exclusion": "planforge.factory._ranking",
    "RankingIndex": "planforge.factory._ranking",
    "RankingWeights": "planforge.factory._ranking",
    "ScoreBreakdown": "planforge.factory._ranking",
    "Selection": "planforge.factory._ranking",
    "SelectionRequest": "planforge.factory._ranking",
    "rank": "planforge.factory._ranking",
    "BreakerConfig": "planforge.factory._breaker",
    "BreakerState": "planforge.factory._breaker",
    "BreakerTransition": "planforge.factory._breaker",
    "CircuitBreaker": "planforge.factory._breaker",
    "DecayingReliability": "planforge.factory._reliability",
    "PlannerStats": "planforge.factory._telemetry",
    "ProfileRing": "planforge.factory._telemetry",
    "RecordStatus": "planforge.factory._registry",
    # the plugin engine, for every plugin group (the holistic modules use it too)
    "PluginGroup": "planforge.factory._plugins",
    "PluginProblem": "planforge.factory._plugins",
    "PluginScan": "planforge.factory._plugins",
    "import_file": "planforge.factory._plugins",
    "settle_duplicates": "planforge.factory._plugins",
    "NOT_LITERAL": "planforge.factory._reader",
    "SourceClass": "planforge.factory._reader",
    "read_source": "planforge.factory._reader",
    "EntryPoint": "planforge.factory._entrypoints",
    "default_cache_root": "planforge.factory._cache",
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
    "default_cache_root",
    "default_factory",
    "import_file",
    "rank",
    "read_source",
    "set_default_factory",
    "settle_duplicates",
]


__getattr__, __dir__ = lazy_exports(__name__, _FACADE_EXPORTS)

if TYPE_CHECKING:
    from planforge.factory._breaker import (
        BreakerConfig,
        BreakerState,
        BreakerTransition,
        CircuitBreaker,
    )
    from planforge.factory._cache import default_cache_root
    from planforge.factory._core import PlannerFactory
    from planforge.factory._default import default_factory, set_default_factory
    from planforge.factory._plugins import (
        PluginGroup,
        PluginProblem,
        PluginScan,
        import_file,
        settle_duplicates,
    )
    from planforge.factory._ranking import (
        Candidate,
        Exclusion,
        RankingIndex,
        RankingWeights,
        ScoreBreakdown,
        Selection,
        SelectionRequest,
        rank,
    )
    from planforge.factory._reader import NOT_LITERAL, SourceClass, read_source
    from planforge.factory._registry import RecordStatus
    from planforge.factory._reliability import DecayingReliability
    from planforge.factory._telemetry import PlannerStats, ProfileRing
