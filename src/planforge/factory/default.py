"""The module-level API: the original factory's function names on one default factory.

This is the only global state in planforge. `set_default_factory` swaps it (tests, embedding
applications); everything else is an object you construct.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from planforge.contract import Plan, Planner, PlannerSpec
from planforge.factory.contexts import ContextValidator
from planforge.factory.core import PlannerFactory
from planforge.factory.ranking import Selection

__all__ = [
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
]

_lock = threading.Lock()
_factory: PlannerFactory | None = None


def default_factory() -> PlannerFactory:
    """The process-wide factory, built from the environment on first use."""
    global _factory
    factory = _factory
    if factory is None:
        with _lock:
            if _factory is None:
                _factory = PlannerFactory()
            factory = _factory
    return factory


def set_default_factory(factory: PlannerFactory | None) -> PlannerFactory | None:
    """Replace the default factory (None: rebuild from the environment on next use)."""
    global _factory
    with _lock:
        previous, _factory = _factory, factory
    return previous


def discover(*, force: bool = False) -> list[PlannerSpec]:
    return default_factory().discover(force=force)


def refresh_metadata() -> list[PlannerSpec]:
    return default_factory().refresh_metadata()


def reload_planners() -> list[str]:
    return default_factory().reload_planners()


def register(cls: type[Planner]) -> PlannerSpec:
    return default_factory().register(cls)


def register_context_kind(kind: str, validator: ContextValidator) -> None:
    default_factory().register_context_kind(kind, validator)


def admit_context(
    objective: str,
    context: Mapping[str, Any],
    *,
    planner: str | None = None,
    context_kind: str | None = None,
) -> str | None:
    return default_factory().admit_context(
        objective, context, planner=planner, context_kind=context_kind
    )


def get_planner(name: str) -> Planner:
    return default_factory().get_planner(name)


def list_planners(*, include_inactive: bool = False) -> list[str]:
    return default_factory().list_planners(include_inactive=include_inactive)


def check_planners(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return default_factory().check_planners(names)


def get_all_planners() -> dict[str, Planner]:
    return default_factory().get_all_planners()


def select_best_planner(
    objective: str,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    self_heal_on_empty: bool | None = None,
    deep_context: Mapping[str, Any] | None = None,
    *,
    context_kind: str | None = None,
) -> Planner:
    return default_factory().select_best_planner(
        objective,
        required_capabilities,
        prefer_production,
        self_heal_on_empty,
        deep_context,
        context_kind=context_kind,
    )


def select_best_planner_name(
    objective: str,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    self_heal_on_empty: bool | None = None,
    deep_context: Mapping[str, Any] | None = None,
    *,
    context_kind: str | None = None,
) -> str:
    return default_factory().select_best_planner_name(
        objective,
        required_capabilities,
        prefer_production,
        self_heal_on_empty,
        deep_context,
        context_kind=context_kind,
    )


def batch_select_best_planners(
    objective: str,
    n: int = 3,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    deep_context: Mapping[str, Any] | None = None,
    *,
    context_kind: str | None = None,
) -> list[str]:
    return default_factory().batch_select_best_planners(
        objective,
        n,
        required_capabilities,
        prefer_production,
        deep_context,
        context_kind=context_kind,
    )


def explain_selection(
    objective: str,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    deep_context: Mapping[str, Any] | None = None,
    *,
    strict: bool = False,
    context_kind: str | None = None,
) -> Selection:
    return default_factory().explain_selection(
        objective,
        required_capabilities,
        prefer_production,
        deep_context,
        strict=strict,
        context_kind=context_kind,
    )


def run_plan(
    objective: str,
    context: Mapping[str, Any] | None = None,
    *,
    planner: str | None = None,
    required_capabilities: Sequence[str] | None = None,
    context_kind: str | None = None,
) -> Plan:
    return default_factory().run_plan(
        objective,
        context,
        planner=planner,
        required_capabilities=required_capabilities,
        context_kind=context_kind,
    )


def self_heal(max_attempts: int = 3, blocking: bool = True) -> dict[str, Any]:
    return default_factory().self_heal(max_attempts, blocking)


def planner_stats(name: str | None = None) -> dict[str, Any]:
    return default_factory().planner_stats(name)


def describe_planner(name: str) -> dict[str, Any]:
    return default_factory().describe_planner(name)


def diagnostics_json() -> dict[str, Any]:
    return default_factory().diagnostics_json()


def diagnostics_report() -> str:
    return default_factory().diagnostics_report()


def export_diagnostics(path: str | Path) -> Path:
    return default_factory().export_diagnostics(path)


def health_check(min_required: int = 1) -> dict[str, Any]:
    return default_factory().health_check(min_required)


def list_quarantined() -> list[dict[str, Any]]:
    return default_factory().list_quarantined()


def release_quarantine(name: str) -> bool:
    return default_factory().release_quarantine(name)


def selection_profiles(last: int | None = None) -> list[dict[str, Any]]:
    return default_factory().selection_profiles(last)


def instantiation_profiles(last: int | None = None) -> list[dict[str, Any]]:
    return default_factory().instantiation_profiles(last)


async def aselect_best_planner_name(
    objective: str,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    self_heal_on_empty: bool | None = None,
    deep_context: Mapping[str, Any] | None = None,
    *,
    context_kind: str | None = None,
) -> str:
    return await default_factory().aselect_best_planner_name(
        objective,
        required_capabilities,
        prefer_production,
        self_heal_on_empty,
        deep_context,
        context_kind=context_kind,
    )


async def aexplain_selection(
    objective: str,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    deep_context: Mapping[str, Any] | None = None,
    *,
    context_kind: str | None = None,
) -> Selection:
    return await default_factory().aexplain_selection(
        objective, required_capabilities, prefer_production, deep_context, context_kind=context_kind
    )


async def arun_plan(
    objective: str,
    context: Mapping[str, Any] | None = None,
    *,
    planner: str | None = None,
    required_capabilities: Sequence[str] | None = None,
    context_kind: str | None = None,
) -> Plan:
    return await default_factory().arun_plan(
        objective,
        context,
        planner=planner,
        required_capabilities=required_capabilities,
        context_kind=context_kind,
    )
