"""The holistic engine: modules, pipeline, configuration, resilience and observability.

The package's face. Names are imported on first use (PEP 562): a worker that needs the
module contract (`planforge.holistic.modules`, the API module authors write against) does
not pay for the engine, the registry and the configuration models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge._lazy import lazy_exports

__all__ = [
    "KINDS",
    "MODULE_DIRS_ENV",
    "Action",
    "ActionSequence",
    "CalculationCache",
    "ConfigError",
    "Domain",
    "EngineResult",
    "EngineSettings",
    "Evaluation",
    "EventHub",
    "Explanation",
    "Filter",
    "HolisticConfig",
    "HolisticEngine",
    "HolisticModule",
    "ModuleGuard",
    "ModuleLoadError",
    "ModuleMetadata",
    "ModuleRegistry",
    "OpportunityCalculator",
    "PatternGenerator",
    "PerformanceTracker",
    "Progress",
    "SequenceGenerator",
    "Simulation",
    "UnknownModuleError",
    "compare",
    "config_digest",
    "config_json_schema",
    "default_registry",
    "dump_config",
    "estimate_sequences",
    "load_config",
    "module_docs",
    "param_docs",
    "parse_config",
    "to_run",
]

# where each public name lives; the package imports a module only when its name is asked for
_EXPORTS: dict[str, str] = {
    "KINDS": "planforge.holistic.modules",
    "MODULE_DIRS_ENV": "planforge.holistic.modules",
    "Action": "planforge.holistic.modules",
    "ActionSequence": "planforge.holistic.modules",
    "CalculationCache": "planforge.holistic._cache",
    "ConfigError": "planforge.holistic.errors",
    "Domain": "planforge.holistic._domain",
    "EngineResult": "planforge.holistic._engine",
    "EngineSettings": "planforge.holistic._config",
    "Evaluation": "planforge.holistic._domain",
    "EventHub": "planforge.holistic._events",
    "Explanation": "planforge.holistic._explain",
    "Filter": "planforge.holistic.modules",
    "HolisticConfig": "planforge.holistic._config",
    "HolisticEngine": "planforge.holistic._engine",
    "HolisticModule": "planforge.holistic.modules",
    "ModuleGuard": "planforge.holistic._resilience",
    "ModuleLoadError": "planforge.holistic.errors",
    "ModuleMetadata": "planforge.holistic.modules",
    "ModuleRegistry": "planforge.holistic._registry",
    "OpportunityCalculator": "planforge.holistic.modules",
    "PatternGenerator": "planforge.holistic.modules",
    "PerformanceTracker": "planforge.holistic._perf",
    "Progress": "planforge.holistic._engine",
    "SequenceGenerator": "planforge.holistic.modules",
    "Simulation": "planforge.holistic._domain",
    "UnknownModuleError": "planforge.holistic.errors",
    "compare": "planforge.holistic._abtest",
    "config_digest": "planforge.holistic._config",
    "config_json_schema": "planforge.holistic._config",
    "default_registry": "planforge.holistic._registry",
    "dump_config": "planforge.holistic._config",
    "estimate_sequences": "planforge.holistic._config",
    "load_config": "planforge.holistic._config",
    "module_docs": "planforge.holistic._docs",
    "param_docs": "planforge.holistic._docs",
    "parse_config": "planforge.holistic._config",
    "to_run": "planforge.holistic._events",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from planforge.holistic._abtest import compare
    from planforge.holistic._cache import CalculationCache
    from planforge.holistic._config import (
        EngineSettings,
        HolisticConfig,
        config_digest,
        config_json_schema,
        dump_config,
        estimate_sequences,
        load_config,
        parse_config,
    )
    from planforge.holistic._docs import module_docs, param_docs
    from planforge.holistic._domain import Domain, Evaluation, Simulation
    from planforge.holistic._engine import EngineResult, HolisticEngine, Progress
    from planforge.holistic._events import EventHub, to_run
    from planforge.holistic._explain import Explanation
    from planforge.holistic._perf import PerformanceTracker
    from planforge.holistic._registry import ModuleRegistry, default_registry
    from planforge.holistic._resilience import ModuleGuard
    from planforge.holistic.errors import ConfigError, ModuleLoadError, UnknownModuleError
    from planforge.holistic.modules import (
        KINDS,
        MODULE_DIRS_ENV,
        Action,
        ActionSequence,
        Filter,
        HolisticModule,
        ModuleMetadata,
        OpportunityCalculator,
        PatternGenerator,
        SequenceGenerator,
    )
