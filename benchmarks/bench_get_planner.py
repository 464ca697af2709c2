"""`get_planner` of an already built planner: target <= 1 us.

Comparison in the same run: the original factory's read path, which took the state lock,
looked the record up and checked its instance on every call.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from planforge.factory import PlannerFactory
from planforge.settings import load_settings

TARGET_US = 1.0
CALLS = 200_000
ROUNDS = 7


def _per_call_us(fn: object, name: str) -> float:
    call = fn  # local for speed
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(CALLS):
            call(name)  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - started) / CALLS / 1000.0)
    return statistics.median(samples)


class _OriginalReadPath:
    """The original approach: lock, record lookup, instance check, on every call."""

    def __init__(self, factory: PlannerFactory) -> None:
        self._lock = threading.RLock()
        self._records = {
            name: {"instance": factory.get_planner(name)} for name in factory.list_planners()
        }

    def get_planner(self, name: str) -> object:
        with self._lock:
            record = self._records.get(name)
            if record is None:
                raise KeyError(name)
            instance = record["instance"]
            if instance is None:
                raise RuntimeError("not built")
            return instance


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        plugins = Path(root) / "plugins"
        plugins.mkdir()
        for number in range(20):
            (plugins / f"p{number}.py").write_text(
                textwrap.dedent(
                    f"""
                    from planforge.contract import Planner

                    class P{number}(Planner):
                        name = "p{number}"
                        reliability_score = 0.9

                        def plan(self, objective, context):
                            return self.new_plan(objective)
                    """
                )
            )
        factory = PlannerFactory(
            load_settings(plugin_dirs=(plugins,)),
            search_path=[],
            cache_dir=Path(root) / "cache",
            state_dir=Path(root) / "state",
        )
        with factory:
            factory.get_planner("p7")
            ours = _per_call_us(factory.get_planner, "p7")
            baseline = _per_call_us(_OriginalReadPath(factory).get_planner, "p7")
    print(
        json.dumps(
            {
                "benchmark": "get_planner_built",
                "get_planner_us": round(ours, 4),
                "original_locked_lookup_us": round(baseline, 4),
                "speedup": round(baseline / ours, 2),
                "target_us": TARGET_US,
                "target_met": ours <= TARGET_US,
            }
        )
    )


if __name__ == "__main__":
    main()
