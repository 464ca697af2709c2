"""planforge: a planner factory and runtime.

Names are imported on first use (PEP 562), so `import planforge` and `planforge --help` stay
fast; the module-level functions (`discover`, `select_best_planner_name`, ...) act on one
default `PlannerFactory`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from planforge._version import __version__

_EXPORTS: dict[str, str] = {
    # contract
    "Plan": "planforge.contract",
    "PlanStep": "planforge.contract",
    "Planner": "planforge.contract",
    "PlannerRef": "planforge.contract",
    "PlannerSpec": "planforge.contract",
    # settings and errors
    "FactorySettings": "planforge.settings",
    "load_settings": "planforge.settings",
    "PlannerError": "planforge.errors",
    "InvalidContext": "planforge.errors",
    "PlannerNotFound": "planforge.errors",
    "PlannerNotAllowed": "planforge.errors",
    "PlannerQuarantined": "planforge.errors",
    "SandboxTimeout": "planforge.errors",
    "SandboxImportError": "planforge.errors",
    "PlannerDiscoveryError": "planforge.errors",
    "PlannerInstantiationError": "planforge.errors",
    "NoActivePlannersError": "planforge.errors",
    "PlannerSelectionError": "planforge.errors",
    "PlanExecutionError": "planforge.errors",
    "SettingsError": "planforge.errors",
    # factory
    "PlannerFactory": "planforge.factory._core",
    "Selection": "planforge.factory._ranking",
    "SelectionRequest": "planforge.factory._ranking",
    "ScoreBreakdown": "planforge.factory._ranking",
    "CircuitOpenError": "planforge.errors",
}
# The names of `planforge.factory._default.__all__` (a test keeps the two equal), written here so
# that `import planforge` imports no part of the factory; the functions' parameters live on the
# `PlannerFactory` methods only.
_API = (
    "admit_context",
    "aexplain_selection",
    "arun_plan",
    "aselect_best_planner_name",
    "batch_select_best_planners",
    "check_planners",
    "default_factory",
    "describe_planner",
    "diagnostics_json",
    "diagnostics_report",
    "discover",
    "explain_selection",
    "export_diagnostics",
    "get_all_planners",
    "get_planner",
    "health_check",
    "instantiation_profiles",
    "list_planners",
    "list_quarantined",
    "planner_stats",
    "refresh_metadata",
    "register",
    "register_context_kind",
    "release_quarantine",
    "reload_planners",
    "run_plan",
    "select_best_planner",
    "select_best_planner_name",
    "selection_profiles",
    "self_heal",
    "set_default_factory",
)
_EXPORTS.update(dict.fromkeys(_API, "planforge.factory._default"))

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'planforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from planforge.contract import (
        Plan,
        Planner,
        PlannerRef,
        PlannerSpec,
        PlanStep,
    )
    from planforge.errors import (
        CircuitOpenError,
        InvalidContext,
        NoActivePlannersError,
        PlanExecutionError,
        PlannerDiscoveryError,
        PlannerError,
        PlannerInstantiationError,
        PlannerNotAllowed,
        PlannerNotFound,
        PlannerQuarantined,
        PlannerSelectionError,
        SandboxImportError,
        SandboxTimeout,
        SettingsError,
    )
    from planforge.factory import PlannerFactory, ScoreBreakdown, Selection, SelectionRequest
    from planforge.factory._default import *  # noqa: F403 (the names of _API)
    from planforge.settings import (
        FactorySettings,
        load_settings,
    )
