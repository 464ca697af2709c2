"""planforge: a planner factory and runtime.

Names are imported on first use (PEP 562), so `import planforge` and `planforge --help` stay
fast; the module-level functions (`discover`, `select_best_planner_name`, ...) act on one
default `PlannerFactory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planforge._api import MODULE_API
from planforge._lazy import lazy_exports
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
_EXPORTS.update(dict.fromkeys(MODULE_API, "planforge.factory._default"))

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
    from planforge.factory._default import *  # noqa: F403 (the names of MODULE_API)
    from planforge.settings import (
        FactorySettings,
        load_settings,
    )
