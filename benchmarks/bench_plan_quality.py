"""Plan quality: how close the holistic planner's plan comes to the best plan a brute force
finds over a broad action space, on generated portfolios (3 to 7 securities, two
currencies, targets by security, country and industry, costs, cooldowns, an ineligible
symbol, a young position), for the default preset and, in the same run, the default with
the combinatorial generator on and the previous candidate handling (`benchmarks._previous`).

The generator, the independent judge and the brute force are the tests' own
(`tests/portfolio/_optimality.py`). Prints one JSON line: per configuration, the share of
instances within 0.001 of the broad best, the mean and worst gap (negative: the plan beats
the broad best, whose sizes are fixed fractions), the rule violations and the mean plan time.
Targets: >= 95% within 0.001, never more than 0.01 below, no violation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from tests.portfolio._optimality import broad_best, generate_instance, market_of, simulate

from benchmarks._previous import default_with_combinatorial, previous_default
from planforge.portfolio import HolisticPortfolioPlanner

NEAR, WORST, SHARE = 0.001, 0.01, 0.95


def judge(config: str | None, seeds: range, best: dict[int, float]) -> dict[str, Any]:
    planner = HolisticPortfolioPlanner()
    gaps: list[float] = []
    violations = 0
    times: list[float] = []
    for seed in seeds:
        context = generate_instance(seed)
        started = time.perf_counter()
        plan = planner.run("Rebalance", context, config=config).plan
        times.append((time.perf_counter() - started) * 1000)
        steps = [(s.action, s.params["symbol"], float(s.params["quantity"])) for s in plan.steps]
        outcome = simulate(market_of(context), steps)
        violations += 0 if outcome.feasible else 1
        gaps.append(best[seed] - (plan.score if plan.score is not None else float("-inf")))
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return {
        "within_0.001": round(sum(g <= NEAR for g in gaps) / len(gaps), 4),
        "mean_gap": round(statistics.fmean(gaps), 5),
        "worst_gap": round(gaps[worst], 5),
        "worst_seed": seeds[worst],
        "violations": violations,
        "plan_ms_mean": round(statistics.fmean(times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1000, help="seeds the tests do not use")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.instances)
    best = {seed: broad_best(generate_instance(seed), 5)[0] for seed in seeds}
    current = judge(None, seeds, best)
    combinatorial = judge(default_with_combinatorial(), seeds, best)
    previous = judge(previous_default(), seeds, best)
    met = (
        current["within_0.001"] >= SHARE
        and current["worst_gap"] <= WORST
        and current["violations"] == 0
    )
    print(
        json.dumps(
            {
                "benchmark": "plan_quality",
                "instances": args.instances,
                "default": current,
                "default_with_combinatorial": combinatorial,
                "previous_candidate_handling": previous,
                "targets": {"within_0.001": SHARE, "worst_gap": WORST, "violations": 0},
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
