"""Entry points of one group: `importlib.metadata` against discovery's scanner, same run.

Why discovery reads `entry_points.txt` itself: the cold pass has a budget, and this figure is
what the standard reader would take of it. Layout as `bench_discovery` (800 distributions, 100
declaring 5 planners each). Both run in one fresh process each round, `importlib.metadata`
already imported (pydantic imports it), alternating over rounds, so both meet the same load.

Run: python -m benchmarks.bench_entry_points
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_discovery import build_site

ROUNDS = 5
PASSES = 5

CHILD = r"""
import json, sys, time
import planforge.contract  # imports pydantic, which imports importlib.metadata
import importlib.metadata as metadata
from planforge.factory._entrypoints import scan_entry_points
site = sys.argv[1]
path = [site, *[entry for entry in sys.path if entry and entry != site]]
ours, standard = [], []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    found = [
        entry
        for dist in metadata.distributions(path=path)
        for entry in dist.entry_points.select(group="planforge.planners")
    ]
    standard.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    scan = scan_entry_points("planforge.planners", path)
    ours.append((time.perf_counter() - started) * 1000)
count = sum(len(dist.entries) for dist in scan.dists)
print(json.dumps({"ours": ours, "standard": standard, "entries": [count, len(found)]}))
"""


def main() -> None:
    ours: list[float] = []
    standard: list[float] = []
    entries: list[int] = []
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
        site = build_site(Path(tmp), 800, 100, 5)
        for _ in range(ROUNDS):
            output = subprocess.run(
                [sys.executable, "-c", CHILD, str(site), str(PASSES)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            run = json.loads(output.strip().splitlines()[-1])
            ours += run["ours"]
            standard += run["standard"]
            entries = run["entries"]
    scanner_ms = statistics.median(ours)
    metadata_ms = statistics.median(standard)
    print(
        json.dumps(
            {
                "benchmark": "entry_points",
                "distributions": 800,
                "entries_found": entries,
                "scanner_ms": round(scanner_ms, 2),
                "importlib_metadata_ms": round(metadata_ms, 2),
                "ratio": round(metadata_ms / scanner_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
