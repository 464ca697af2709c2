"""Hostile plugin planners for the batch tests: one kills its worker, one hangs."""

from __future__ import annotations

from pathlib import Path

from planforge.factory import PlannerFactory
from planforge.settings import load_settings

__all__ = ["HOSTILE", "hostile_factory"]

HOSTILE = """
import os, time
from planforge.contract import Planner

class Crash(Planner):
    name = "crash"
    version = "1.0.0"
    keywords = ("crash",)

    def plan(self, objective, context):
        os._exit(9)

class Hang(Planner):
    name = "hang"
    version = "1.0.0"
    keywords = ("hang",)

    def plan(self, objective, context):
        time.sleep(60)
"""


def hostile_factory(root: Path) -> PlannerFactory:
    """A factory that finds the installed planners and the hostile ones under `root`."""
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "hostile_batch.py").write_text(HOSTILE)
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=30.0)
    return PlannerFactory(settings, cache_dir=root / "cache", state_dir=root / "state")
