"""Selection among 10, 100 and 1000 planners: `RankingIndex.best` against a naive baseline.

The naive baseline re-implements the original factory's approach inside this file: on every
call it builds the candidate list sorted by name, computes a breakdown dict per candidate
(same formula, objective relevance included) and sorts. To keep the comparison about the
approach rather than tokenising, the baseline gets the same cached planner terms. `rank()`
(the plain, fully explained version) is measured too.

Each call builds its `SelectionRequest` inside the timed region, as the factory does. The
same selection through a real `PlannerFactory` (which also records a selection profile) is
reported as `factory_p50_us`.
Prints one JSON line: p50/p99 per call in microseconds, ratios, targets and whether they are met.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from planforge.contract import TIERS, PlannerSpec
from planforge.factory import PlannerFactory
from planforge.factory._ranking import (
    HOTSPOT_CAPABILITIES,
    TIER_BONUS,
    Candidate,
    RankingIndex,
    RankingWeights,
    SelectionRequest,
    objective_terms,
    planner_terms,
    rank,
)
from planforge.settings import load_settings

TARGET_P50_US = {10: 20.0, 100: 100.0, 1000: 1000.0}
SIZES = (10, 100, 1000)
CALLS = {10: 20_000, 100: 5_000, 1000: 1_000}
NAIVE_CALLS = {10: 2_000, 100: 300, 1000: 40}

CAPABILITIES = (
    "planning", "rebalance", "tax", "risk", "refactor", "structural", "deep_index", "llm",
    "forecast", "cashflow", "scheduling", "routing", "budget", "compliance", "reporting",
    "multi_pass", "simulation", "optimisation", "hedging", "allocation",
)  # fmt: skip
DOMAIN_WORDS = (
    "portfolio", "rebalance", "tax", "loss", "harvest", "risk", "bond", "equity", "cash",
    "budget", "retirement", "savings", "dividend", "currency", "hedge", "allocation", "code",
    "architecture", "migration", "refactor", "schedule", "route", "delivery", "inventory",
    "forecast", "report", "compliance", "audit", "growth", "income",
)  # fmt: skip
OBJECTIVES = (
    "Rebalance my portfolio towards the target allocation",
    "Harvest tax losses before the end of the year",
    "Plan a risk-aware migration of the billing architecture",
    "Forecast cash needs for the next quarter and budget accordingly",
)


def make_specs(n: int, seed: int = 7) -> list[PlannerSpec]:
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        words = rng.sample(DOMAIN_WORDS, 3)
        caps = tuple(sorted(rng.sample(CAPABILITIES, rng.randint(1, 5))))
        specs.append(
            PlannerSpec(
                name=f"{words[0]}_{words[1]}_planner_{i:04d}",
                version="1.0.0",
                capabilities=caps,
                tags=(),
                tier=rng.choice(TIERS),
                production_ready=rng.random() < 0.5,
                reliability_score=rng.choice((None, 0.6, 0.75, 0.8, 0.9, 0.95)),
                description=(
                    f"Plans {words[0]} and {words[1]} work with {words[2]} constraints, "
                    "step by step, with explanations."
                ),
                keywords=tuple(sorted(set(rng.sample(DOMAIN_WORDS, 4)))),
                stateful=False,
                target=f"plugins.p{i}:Planner",
                source="entry_point",
            )
        )
    return specs


def reliabilities(specs: Sequence[PlannerSpec], seed: int = 11) -> dict[str, float]:
    rng = random.Random(seed)
    out = {}
    for spec in specs:
        prior = 0.1 if spec.reliability_score is None else spec.reliability_score
        out[spec.name] = min(1.0, max(0.0, prior + rng.uniform(-0.1, 0.1)))
    return out


# --- the naive baseline: the original factory's per-call approach ------------------------------


def naive_select(
    records: Mapping[str, PlannerSpec],
    current: Mapping[str, float],
    objective: str,
    required: Sequence[str] | None,
    prefer_production: bool,
    deep_context: Mapping[str, Any] | None,
    weights: RankingWeights,
) -> tuple[str, float] | None:
    candidates = sorted(records.values(), key=lambda spec: spec.name)
    required_set = set(required or [])
    wanted = set(objective_terms(objective))
    deep_present = deep_context is not None and deep_context.get("deep_index_summary") is not None
    hotspots = deep_context.get("hotspots_count") if deep_context else None
    hot = isinstance(hotspots, int) and hotspots > weights.hotspot_threshold
    scored: list[dict[str, Any]] = []
    for spec in candidates:
        reliability = current[spec.name]
        if reliability < weights.min_reliability:
            continue
        offered = set(spec.capabilities)
        match = len(required_set & offered) / len(required_set) if required_set else 1.0
        used = reliability
        if prefer_production and not spec.production_ready and required_set:
            used = reliability * 0.97
        production = 0.04 if spec.production_ready else 0.0
        tier = TIER_BONUS.get(spec.tier, 0.0)
        base = (0.6 * match + 0.35 * used) + (production + tier)
        deep_boost = weights.deep_index_cap_boost if deep_present and "deep_index" in offered else 0
        hot_boost = (
            weights.hotspot_cap_boost if hot and offered & set(HOTSPOT_CAPABILITIES) else 0.0
        )
        terms = planner_terms(spec)
        relevance = len(wanted & terms) / len(wanted) if wanted else 0.0
        total = base + deep_boost + hot_boost + weights.objective_weight * relevance
        scored.append(
            {
                "name": spec.name,
                "base": base,
                "match": match,
                "reliability": reliability,
                "tier": tier,
                "production_ready": spec.production_ready,
                "deep_boost": deep_boost,
                "hotspot_boost": hot_boost,
                "relevance": relevance,
                "total": total,
            }
        )
    if not scored:
        return None
    scored.sort(key=lambda row: (-row["total"], -row["reliability"], row["name"]))
    return scored[0]["name"], scored[0]["total"]


def factory_for(specs: Sequence[PlannerSpec], root: Path) -> PlannerFactory:
    """A real factory that discovered `specs` as plugin files (profiling on, as by default)."""
    plugins = root / "plugins"
    plugins.mkdir()
    for number, spec in enumerate(specs):
        attributes = {
            key: getattr(spec, key)
            for key in ("name", "version", "capabilities", "tags", "tier", "production_ready",
                        "reliability_score", "description", "keywords")
        }  # fmt: skip
        body = "\n".join(f"    {key} = {value!r}" for key, value in attributes.items())
        (plugins / f"bench_{number:04d}.py").write_text(
            f"from planforge.contract import Planner\n\n\nclass Bench{number}(Planner):\n{body}\n"
        )
    factory = PlannerFactory(
        load_settings(plugin_dirs=(plugins,)),
        search_path=[],
        cache_dir=root / "cache",
        state_dir=root / "state",
    )
    factory.discover()
    return factory


# --- measurement -------------------------------------------------------------------------------


def percentiles(fn: Callable[[int], object], calls: int) -> tuple[float, float]:
    for i in range(min(200, calls)):
        fn(i)
    samples = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(calls):
            start = clock()
            fn(i)
            samples.append(clock() - start)
    finally:
        gc.enable()
    samples.sort()
    p50 = statistics.median(samples) / 1000.0
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000.0
    return round(p50, 2), round(p99, 2)


def measure(
    specs: Sequence[PlannerSpec],
    capability_sets: tuple[tuple[str, ...], ...],
    weights: RankingWeights,
) -> dict[str, Any]:
    n = len(specs)
    current = reliabilities(specs)
    records = {spec.name: spec for spec in specs}
    index = RankingIndex([Candidate(s, current[s.name]) for s in specs], weights)

    def fast(i: int) -> tuple[str, float] | None:
        request = SelectionRequest(OBJECTIVES[i % 4], capability_sets[i % 2])
        return index.best(request)

    def naive(i: int) -> tuple[str, float] | None:
        objective, caps = OBJECTIVES[i % 4], capability_sets[i % 2]
        return naive_select(records, current, objective, caps, True, None, weights)

    def plain(i: int) -> str | None:
        request = SelectionRequest(OBJECTIVES[i % 4], capability_sets[i % 2])
        candidates = [Candidate(s, current[s.name]) for s in specs]
        return rank(candidates, request, weights).winner

    for i in range(8):  # the three agree before anything is timed
        answer = fast(i)
        assert answer == naive(i), (n, answer, naive(i))
        assert answer is not None
        assert plain(i) == answer[0]
    p50, p99 = percentiles(fast, CALLS[n])
    naive_p50, naive_p99 = percentiles(naive, NAIVE_CALLS[n])
    rank_p50, _ = percentiles(plain, NAIVE_CALLS[n])
    with tempfile.TemporaryDirectory() as root:
        factory = factory_for(specs, Path(root))
        for name, value in current.items():
            factory._current().index.set_reliability(name, value)

        def through_factory(i: int) -> str:
            return factory.select_best_planner_name(OBJECTIVES[i % 4], capability_sets[i % 2])

        assert through_factory(0) == fast(0)[0]  # type: ignore[index]
        factory_p50, factory_p99 = percentiles(through_factory, CALLS[n])
    return {
        "p50_us": p50,
        "p99_us": p99,
        "factory_p50_us": factory_p50,
        "factory_p99_us": factory_p99,
        "naive_p50_us": naive_p50,
        "naive_p99_us": naive_p99,
        "rank_p50_us": rank_p50,
        "speedup_vs_naive_p50": round(naive_p50 / p50, 1),
        "target_p50_us": TARGET_P50_US[n],
        "target_met": p50 <= TARGET_P50_US[n],
        "factory_target_met": factory_p50 <= TARGET_P50_US[n],
    }


def run() -> dict[str, Any]:
    weights = RankingWeights()
    cases = {
        "with_capabilities": (("rebalance",), ("planning", "risk")),
        "no_capabilities": ((), ()),
    }
    results = {
        f"n{n}_{case}": measure(make_specs(n), capability_sets, weights)
        for n in SIZES
        for case, capability_sets in cases.items()
    }
    return {
        "benchmark": "selection",
        "unit": "us per call (request construction included)",
        "cases": results,
        "all_targets_met": all(figures["target_met"] for figures in results.values()),
    }


if __name__ == "__main__":
    print(json.dumps(run(), separators=(",", ":")))
