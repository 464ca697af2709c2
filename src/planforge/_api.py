"""The names of the module-level API, listed once.

`import planforge` reads them from here to offer them lazily without importing the factory;
`planforge.factory._default` defines a function for each.
"""

from __future__ import annotations

__all__ = ["MODULE_API"]

MODULE_API: tuple[str, ...] = (
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
