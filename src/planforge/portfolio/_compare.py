"""Work on holistic configurations that runs in a worker: an A/B comparison, a dry run.

The service hands these functions to its executor, so a comparison or a dry run (and every
holistic module it loads, plugins included) runs where plans run, never in the server's
process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from planforge.factory import PlannerFactory
from planforge.holistic import HolisticConfig, compare, parse_config
from planforge.portfolio.evaluation import PortfolioSettings
from planforge.portfolio.planner import HolisticPortfolioPlanner

__all__ = ["compare_configs", "dry_run_config"]

_planners: dict[int, HolisticPortfolioPlanner] = {}
_lock = threading.Lock()


def _planner(factory: PlannerFactory) -> HolisticPortfolioPlanner:
    """One portfolio planner per factory in this process: its engine cache is reused."""
    with _lock:
        planner = _planners.get(id(factory))
        if planner is None:
            _planners.clear()  # one factory per worker: drop a closed one's planner
            planner = _planners[id(factory)] = HolisticPortfolioPlanner()
        return planner


def _parse(planner: HolisticPortfolioPlanner, text: str, source: str) -> HolisticConfig:
    """TOML text as the store and the service read it (never a preset name or a path)."""
    return parse_config(
        text, registry=planner.registry, domain_settings=PortfolioSettings, source=source
    )


def compare_configs(
    factory: PlannerFactory,
    objective: str,
    context: Mapping[str, Any],
    configs: tuple[str, str],
) -> dict[str, Any]:
    """Plan `context` with both configurations (TOML texts: a parsed one holds read-only
    views that do not cross a pipe) and judge both plans by one score."""
    planner = _planner(factory)
    engine_a = planner.engine(_parse(planner, configs[0], "config_a"))
    engine_b = planner.engine(_parse(planner, configs[1], "config_b"))
    return compare(engine_a, engine_b, objective, context).to_dict()


def dry_run_config(
    factory: PlannerFactory, objective: str, context: Mapping[str, Any], config: str
) -> dict[str, Any]:
    """Load what `config` (TOML text) enables (modules, dependencies) and plan nothing."""
    planner = _planner(factory)
    return planner.engine(_parse(planner, config, "dry-run")).dry_run().to_dict()
