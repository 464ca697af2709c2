"""Batch planning throughput: plans per second for generated sample-sized portfolios.

In one run, on the same generated portfolios (a JSON Lines file, as a user would feed it):
`plan_many` with the process executor at 1 and 2 workers, with Ray on a local cluster of 2
CPUs (started before the clock, as a user's cluster is), and the naive shell loop, one
`planforge plan` process per portfolio file, on a sample. Each figure is the public call
from start to the last result: worker start-up, discovery and reading the input included.
Targets: >= 100 plans/s per core (process), >= 1.8x from 1 to 2 workers, Ray >= 80% of the
process executor on the same cores, >= 50x the shell loop.

    python -m benchmarks.bench_batch [--count 10000] [--shell-sample 20] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from planforge.batch import plan_many, read_inputs
from planforge.portfolio.synthetic import generate_portfolios

OBJECTIVE = "Rebalance my portfolio"
TARGET_PER_CORE = 100.0
TARGET_SCALING = 1.8
TARGET_RAY_SHARE = 0.8
TARGET_VS_SHELL = 50.0


def write_inputs(folder: Path, count: int, sample: int) -> tuple[Path, list[Path]]:
    """The portfolios as one JSON Lines file, and the first `sample` as context files."""
    lines = folder / "portfolios.jsonl"
    files: list[Path] = []
    with lines.open("w", encoding="utf-8") as out:
        for number, (ident, context) in enumerate(generate_portfolios(count, seed=0)):
            out.write(json.dumps({"id": ident, "context": context}) + "\n")
            if number < sample:
                path = folder / f"{ident}.json"
                path.write_text(json.dumps(context), encoding="utf-8")
                files.append(path)
    return lines, files


def batch_rate(source: Path, executor: str, **options: Any) -> tuple[float, int]:
    """(plans per second, failures) of `plan_many` over every input of `source`."""
    started = time.perf_counter()
    planned = failed = 0
    for result in plan_many(read_inputs(source), executor=executor, **options):
        planned += result.ok
        failed += not result.ok
    return planned / (time.perf_counter() - started), failed


def ray_rate(source: Path) -> tuple[float, int]:
    from benchmarks._ray_local import local_ray_cluster

    with local_ray_cluster(num_cpus=2) as address:
        return batch_rate(source, "ray", address=address)


def shell_rate(files: list[Path]) -> float:
    """Plans per second of one `planforge plan` process per file, one after the other."""
    started = time.perf_counter()
    for path in files:
        command = [sys.executable, "-m", "planforge.cli", "plan", OBJECTIVE, "--context", str(path)]
        subprocess.run([*command, "--json"], check=True, capture_output=True)
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--shell-sample", type=int, default=20)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pfbatch") as folder:
        source, files = write_inputs(Path(folder), args.count, args.shell_sample)
        one, failed_one = batch_rate(source, "process", workers=1)
        two, failed_two = batch_rate(source, "process", workers=2)
        ray, failed_ray = (0.0, 0) if args.no_ray else ray_rate(source)
        shell = shell_rate(files)
    figures: dict[str, Any] = {
        "portfolios": args.count,
        "process_1_worker_plans_per_s": round(one, 1),
        "process_2_workers_plans_per_s": round(two, 1),
        "ray_2_cpus_plans_per_s": round(ray, 1) if ray else None,
        "shell_loop_plans_per_s": round(shell, 2),
        "per_core_plans_per_s": round(two / 2, 1),
        "scaling_1_to_2_workers": round(two / one, 2),
        "ray_share_of_process": round(ray / two, 2) if ray else None,
        "vs_shell_loop": round(two / shell, 1),
        "vs_shell_loop_per_core": round(one / shell, 1),
        "failed": failed_one + failed_two + failed_ray,
        "targets": {
            "per_core_plans_per_s": TARGET_PER_CORE,
            "scaling_1_to_2_workers": TARGET_SCALING,
            "ray_share_of_process": TARGET_RAY_SHARE,
            "vs_shell_loop": TARGET_VS_SHELL,
        },
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
