"""What running a plan out of the server's process costs: each executor against `inline`.

Timed: submit to result of `ExecutionEngine.run` (the call the service makes for each run),
one run after another, for a tiny planner (a plugin file) and for the holistic planner on the
sample portfolio. Each executor is warmed first (its workers started and each planner loaded
once), so the figure is the steady per-run cost a user feels, not a worker's start. `inline`
is the comparison, measured in the same run: overhead = executor p50 - inline p50.

The `ray` executor is measured when Ray is installed and PLANFORGE_REDIS_URL names a Redis
(its events travel there): on the cluster PLANFORGE_RAY_ADDRESS names, or else on a local
head of 2 CPUs started for the run; otherwise its line says why it was left out.

Run: python -m benchmarks.bench_executors [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._ray_local import local_ray_cluster
from planforge.factory import PlannerFactory
from planforge.runtime import (
    ExecutionEngineFactory,
    InProcessEventBus,
    UserExecutionContext,
    build_executor,
    load_runtime_settings,
)
from planforge.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "portfolio.json"
TINY = """
from planforge.contract import Planner, PlanStep


class Tiny(Planner):
    name = "bench_tiny"
    version = "1.0.0"
    keywords = ("tiny",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.9

    def plan(self, objective, context):
        return self.new_plan(objective, [PlanStep(id="1", action="noop")])
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _time_runs(
    engines: ExecutionEngineFactory, planner: str, context: dict[str, Any], runs: int
) -> list[float]:
    timings: list[float] = []
    for index in range(runs + 2):  # two warm-up runs load the planner in the worker
        user = UserExecutionContext.create(f"bench{index % 10}")
        async with engines.user_execution_scope(user) as engine:
            started = time.perf_counter()
            await engine.run("rebalance", context, planner=planner, timeout_s=120)
            if index >= 2:
                timings.append((time.perf_counter() - started) * 1000)
    return timings


def _measure(
    name: str, factory: PlannerFactory, cases: dict[str, Any], runs: int
) -> dict[str, Any]:
    settings = load_runtime_settings(max_runs_per_user=100)
    executor = build_executor(name, factory, settings)
    bus = InProcessEventBus(buffer_size=1000)
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings, executor=executor)
    executor.start()
    try:
        return {
            case: asyncio.run(_time_runs(engines, planner, context, runs))
            for case, (planner, context) in cases.items()
        }
    finally:
        asyncio.run(engines.aclose())
        bus.close()


def _ray_unavailable() -> str:
    """Why the ray executor cannot be measured here ("" when it can)."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed: pip install 'planforge[ray]'"
    if not os.environ.get("PLANFORGE_REDIS_URL"):
        return "set PLANFORGE_REDIS_URL: a ray run's events travel through Redis"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    portfolio = json.loads(EXAMPLE.read_text())
    cases = {"tiny": ("bench_tiny", {}), "holistic": ("holistic", portfolio)}
    executors = ["inline", "process"]
    with ExitStack() as stack:
        skipped = _ray_unavailable()
        if skipped:
            print(json.dumps({"benchmark": "executors", "executor": "ray", "skipped": skipped}))
        else:
            if not os.environ.get("PLANFORGE_RAY_ADDRESS"):
                address = stack.enter_context(local_ray_cluster(num_cpus=2))
                os.environ["PLANFORGE_RAY_ADDRESS"] = address
            executors.append("ray")
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pf-bench-exec-"))
        plugins = Path(tmp) / "plugins"
        plugins.mkdir()
        (plugins / "bench_tiny.py").write_text(TINY)
        settings = load_settings(plugin_dirs=(plugins,))
        factory = PlannerFactory(
            settings, cache_dir=Path(tmp) / "cache", state_dir=Path(tmp) / "state"
        )
        stack.callback(factory.close)
        results = {name: _measure(name, factory, cases, args.runs) for name in executors}
    for name in executors:
        for case in cases:
            timings, inline = results[name][case], results["inline"][case]
            p50, base = statistics.median(timings), statistics.median(inline)
            print(
                json.dumps(
                    {
                        "benchmark": "executors",
                        "executor": name,
                        "planner": case,
                        "runs": len(timings),
                        "p50_ms": round(p50, 3),
                        "p95_ms": round(_percentile(timings, 0.95), 3),
                        "comparison": "inline p50_ms",
                        "comparison_value": round(base, 3),
                        "overhead_p50_ms": round(p50 - base, 3),
                        "ratio": round(p50 / base, 2),
                    }
                )
            )


if __name__ == "__main__":
    main()
