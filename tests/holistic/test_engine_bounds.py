"""The holistic engine bounds every stage and plans the same way every time, in this process
and in fresh ones."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from planforge.contract import Plan
from planforge.holistic import (
    EngineResult,
    HolisticEngine,
    ModuleRegistry,
    parse_config,
)
from planforge.holistic.modules import (
    ActionSequence,
)
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings
from planforge.portfolio.planner import HolisticPortfolioPlanner, preset_text
from tests.holistic._engine_support import (
    EXAMPLE,
    OBJECTIVE,
    ROOT,
    FloodGenerator,
    FloodPattern,
    build_engine,
    config_text,
    resilience_context,
)

# -- 5. every stage is bounded -----------------------------------------------------------------


class CountingDomain(PortfolioDomain):
    """The portfolio domain, counting the sequences it is asked to score."""

    def __init__(self) -> None:
        self.scored = 0

    def evaluate(
        self, context: Any, sequences: Sequence[ActionSequence], settings: Any = None
    ) -> Any:
        self.scored += len(sequences)
        return super().evaluate(context, sequences, settings)


BOUNDS = {
    "max_opportunities_per_category": 3,
    "max_candidates": 4,
    "max_patterns_per_generator": 7,
    "max_sequences": 11,
    "priority_threshold": 0.0,
    "module_timeout_s": 0,
}


def flood_run(extra: Sequence[str]) -> tuple[EngineResult, CountingDomain, HolisticEngine]:
    FloodPattern.seen = []
    FloodGenerator.seen = []
    modules: dict[str, dict[str, Mapping[str, Any] | None]] = {
        "opportunity_calculators": {"flood_a": None, "flood_b": None}
    }
    for key in extra:
        kind, _, name = key.partition(".")
        modules.setdefault(kind, {})[name] = None
    domain = CountingDomain()
    engine = build_engine(config_text(BOUNDS, modules), domain=domain)
    return engine.run(OBJECTIVE, resilience_context()), domain, engine


def test_calculators_and_candidates_are_bounded() -> None:
    result, _, _ = flood_run(
        ["pattern_generators.flood_pattern", "sequence_generators.flood_generator"]
    )
    assert FloodPattern.seen == [{"flood_a": 3, "flood_b": 3}]
    assert FloodGenerator.seen == [4]
    assert result.sequences_generated == BOUNDS["max_sequences"]


def test_a_pattern_generator_is_bounded() -> None:
    result, domain, _ = flood_run(["pattern_generators.flood_pattern"])
    assert result.sequences_generated == BOUNDS["max_patterns_per_generator"]
    assert result.sequences_evaluated == BOUNDS["max_patterns_per_generator"]
    assert domain.scored <= BOUNDS["max_patterns_per_generator"]


def test_a_sequence_generator_and_the_evaluated_batch_are_bounded() -> None:
    result, domain, engine = flood_run(["sequence_generators.flood_generator", "filters.inventing"])
    assert result.sequences_generated == BOUNDS["max_sequences"]
    assert result.sequences_evaluated <= BOUNDS["max_sequences"]
    assert result.feasible_sequences <= result.sequences_evaluated
    assert domain.scored <= BOUNDS["max_sequences"]
    started = [e.payload for e in engine.events.recent() if e.type == "evaluation_started"]
    assert started == [{"sequences": result.sequences_evaluated}]
    # the sequences are made-up symbols: infeasible, so the plan is empty and says so
    assert result.plan.steps == []
    assert result.plan.warnings


# -- 6. determinism ----------------------------------------------------------------------------


def plan_fingerprint(plan: Plan) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "steps": [step.model_dump(mode="json") for step in plan.steps],
        "metrics": plan.metrics,
        "warnings": plan.warnings,
    }


def test_two_engines_make_the_same_plan() -> None:
    raw = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    plans = []
    for _ in range(2):
        registry = ModuleRegistry()
        config = parse_config(
            preset_text("default"), registry=registry, domain_settings=PortfolioSettings
        )
        engine = HolisticEngine(config, PortfolioDomain(), registry=registry)
        try:
            plans.append(plan_fingerprint(engine.run(OBJECTIVE, raw).plan))
        finally:
            engine.guard.close()
    assert plans[0]["steps"]
    assert plans[0] == plans[1]


_SCRIPT = """
import json, sys
from planforge.portfolio.planner import HolisticPortfolioPlanner
context = json.loads(open(sys.argv[1], encoding="utf-8").read())
plan = HolisticPortfolioPlanner().plan("Rebalance my portfolio", context)
print(json.dumps({
    "plan_id": plan.plan_id,
    "steps": [step.model_dump(mode="json") for step in plan.steps],
    "metrics": plan.metrics,
    "warnings": plan.warnings,
}, sort_keys=True))
"""


def test_fresh_processes_with_different_hash_seeds_make_the_same_plan() -> None:
    children = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, str(EXAMPLE)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
        )
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0]["steps"]
    assert outputs[0] == outputs[1]
    here = plan_fingerprint(
        HolisticPortfolioPlanner().plan(OBJECTIVE, json.loads(EXAMPLE.read_text("utf-8")))
    )
    assert json.loads(json.dumps(here, sort_keys=True)) == outputs[0]
    assert not math.isnan(outputs[0]["metrics"]["end_state_score"])
