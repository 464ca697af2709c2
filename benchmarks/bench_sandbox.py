"""Per-module cost of the sandboxed import check, against a fresh interpreter per module.

Generates 2 x N distinct small planner modules (each imports planforge.contract and defines a
Planner subclass) in a temporary directory, so the import system has cached none of them. Half
are checked through a warm `Sandbox`; the figure is the median of (check wall time - the
module's own import time measured in the child). The other half are imported the original
factory's way, `subprocess.run([python, "-c", "import m"])`, in the same run.

Targets: <= 5 ms per module beyond the plugin's own import, and >= 4x faster per module than
the subprocess approach. Run from the repository root: `python -m benchmarks.bench_sandbox`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from planforge.factory._sandbox import ImportTarget, Sandbox

MODULES = 50
SUBPROCESS_MODULES = 20
OVERHEAD_TARGET_MS = 5.0
SPEEDUP_TARGET = 4.0

PLUGIN_SOURCE = '''\
"""A small realistic planner plugin, number {index}."""

from planforge.contract import Plan, Planner


class Planner{index}(Planner):
    name = "bench_planner_{index}"
    version = "1.{index}.0"
    capabilities = ("rebalance", "cap_{index}")
    tags = ("bench",)
    tier = "stable"
    reliability_score = 0.9
    description = "Benchmark planner {index}."

    def plan(self, objective, context):
        return self.new_plan(objective)

    def self_test(self):
        if not self.name:
            raise RuntimeError("unnamed")
'''


def write_modules(root: Path, prefix: str, count: int) -> list[str]:
    names = []
    for index in range(count):
        name = f"{prefix}_{index:03d}"
        (root / f"{name}.py").write_text(PLUGIN_SOURCE.format(index=index))
        names.append(name)
    return names


def bench_sandbox(root: Path, names: list[str]) -> tuple[float, float, float, float]:
    """Median overhead, median total, median import (ms), helper start (ms)."""
    overheads: list[float] = []
    totals: list[float] = []
    imports: list[float] = []
    with Sandbox(timeout_s=10.0) as sandbox:
        sandbox.start()
        start_ms = sandbox.helper_start_ms or 0.0
        sandbox.check(ImportTarget("planforge.contract"))  # one warm-up round trip
        for index, name in enumerate(names):
            target = ImportTarget(name, f"Planner{index}", search_path=(str(root),))
            started = time.perf_counter()
            report = sandbox.check(target)
            wall_ms = (time.perf_counter() - started) * 1000
            overheads.append(wall_ms - report.import_ms)
            totals.append(wall_ms)
            imports.append(report.import_ms)
    return (
        statistics.median(overheads),
        statistics.median(totals),
        statistics.median(imports),
        start_ms,
    )


def bench_subprocess(root: Path, names: list[str]) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *sys.path[1:]])
    times: list[float] = []
    for name in names:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {name}"], env=env, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_sandbox_") as tmp:
        root = Path(tmp)
        sandboxed = write_modules(root, "bench_sbx_plugin", MODULES)
        spawned = write_modules(root, "bench_sub_plugin", SUBPROCESS_MODULES)
        overhead_ms, total_ms, import_ms, start_ms = bench_sandbox(root, sandboxed)
        subprocess_ms = bench_subprocess(root, spawned)
    speedup = subprocess_ms / total_ms
    result = {
        "benchmark": "sandbox",
        "modules": MODULES,
        "subprocess_modules": SUBPROCESS_MODULES,
        "sandbox_overhead_ms_median": round(overhead_ms, 3),
        "sandbox_total_ms_median": round(total_ms, 3),
        "plugin_import_ms_median": round(import_ms, 3),
        "subprocess_ms_median": round(subprocess_ms, 3),
        "speedup": round(speedup, 2),
        "helper_start_ms": round(start_ms, 3),
        "overhead_target_ms": OVERHEAD_TARGET_MS,
        "speedup_target": SPEEDUP_TARGET,
        "overhead_met": overhead_ms <= OVERHEAD_TARGET_MS,
        "speedup_met": speedup >= SPEEDUP_TARGET,
        "pass": overhead_ms <= OVERHEAD_TARGET_MS and speedup >= SPEEDUP_TARGET,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
