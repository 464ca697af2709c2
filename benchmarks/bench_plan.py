"""End-to-end `plan` on the sample portfolio with the default preset.

"First" is the first plan in a fresh process after `import planforge` (configuration parsed,
enabled modules imported, per-context model built); "warm" repeats it on the same planner.
Targets: first <= 150 ms, warm <= 15 ms. Comparisons in the same run: the previous candidate
handling (`benchmarks._previous`: one size per trade, no sizing generator), its score beside
the default's, and the same pipeline with a domain that evaluates one sequence at a time
through `simulate`, as the original planner did (it took 0.08 s a sequence).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from benchmarks._previous import previous_default
from planforge.holistic import Evaluation, HolisticEngine
from planforge.holistic.modules import ActionSequence
from planforge.portfolio.domain import PortfolioDomain
from planforge.portfolio.planner import HolisticPortfolioPlanner

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "portfolio.json"
TARGET_FIRST_MS = 150.0
TARGET_WARM_MS = 15.0
RUNS = 21

FIRST_PLAN = """
import json, sys, time
import planforge
from planforge.portfolio.planner import HolisticPortfolioPlanner
context = json.loads(open(sys.argv[1]).read())
config = open(sys.argv[2]).read() if len(sys.argv) > 2 else None
started = time.perf_counter()
plan = HolisticPortfolioPlanner().run("Rebalance my portfolio", context, config=config).plan
print(json.dumps({"ms": (time.perf_counter() - started) * 1000, "steps": len(plan.steps)}))
"""


class PerSequenceDomain(PortfolioDomain):
    """The original approach: simulate and score each sequence on its own."""

    def evaluate(
        self,
        context: Any,
        sequences: Sequence[ActionSequence],
        settings: BaseModel | Mapping[str, Any] | None = None,
    ) -> Evaluation:
        results = [self.simulate(context, sequence, settings) for sequence in sequences]
        feasible = np.array([r.feasible for r in results], dtype=bool)
        scores = np.array(
            [r.end_state_score if r.feasible else -np.inf for r in results], dtype=np.float64
        )
        costs = np.array([r.costs for r in results], dtype=np.float64)
        return Evaluation(scores=scores, feasible=feasible, costs=costs)


def first_plans(*extra: str) -> list[float]:
    """The first plan's time in five new processes."""
    command = [sys.executable, "-c", FIRST_PLAN, str(EXAMPLE), *extra]
    return [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["ms"]
        for _ in range(5)
    ]


def warm_plans(planner: HolisticPortfolioPlanner, context: Any, config: str | None) -> list[float]:
    planner.run("Rebalance my portfolio", context, config=config)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        planner.run("Rebalance my portfolio", context, config=config)
        times.append((time.perf_counter() - started) * 1000)
    return times


def per_sequence_ms(planner: HolisticPortfolioPlanner, context: Any, steps: Any) -> float:
    engine = planner.engine()
    naive = HolisticEngine(engine.config, PerSequenceDomain(), registry=planner.registry)
    naive_result = naive.run("Rebalance my portfolio", context)
    assert naive_result.plan.steps == steps, "both evaluations must agree"
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        naive.run("Rebalance my portfolio", context)
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main() -> None:
    context = json.loads(EXAMPLE.read_text())
    previous = previous_default()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(previous)
    first = statistics.median(first_plans())
    first_previous = statistics.median(first_plans(handle.name))
    Path(handle.name).unlink()
    planner = HolisticPortfolioPlanner()
    result = planner.run("Rebalance my portfolio", context)
    before = planner.run("Rebalance my portfolio", context, config=previous)
    warm = statistics.median(warm_plans(planner, context, None))
    warm_previous = statistics.median(warm_plans(planner, context, previous))
    naive_ms = per_sequence_ms(planner, context, result.plan.steps)
    print(
        json.dumps(
            {
                "benchmark": "plan_end_to_end",
                "sequences_evaluated": result.sequences_evaluated,
                "steps": len(result.plan.steps),
                "score": round(result.plan.score or 0.0, 5),
                "first_plan_after_import_ms": round(first, 2),
                "warm_plan_ms": round(warm, 2),
                "previous_candidate_handling": {
                    "score": round(before.plan.score or 0.0, 5),
                    "first_plan_after_import_ms": round(first_previous, 2),
                    "warm_plan_ms": round(warm_previous, 2),
                },
                "per_sequence_evaluation_plan_ms": round(naive_ms, 2),
                "speedup_vs_per_sequence": round(naive_ms / warm, 1),
                "targets_ms": {"first": TARGET_FIRST_MS, "warm": TARGET_WARM_MS},
                "met": first <= TARGET_FIRST_MS and warm <= TARGET_WARM_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
