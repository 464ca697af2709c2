"""Every size of a trade reaches the generators: the engine no longer keeps only the
highest-priority size of a side and symbol (`candidate_variants = "best"`, the old rule, is
kept for comparisons)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.holistic._engine_support import (
    OBJECTIVE,
    ActionSpec,
    build_engine,
    config_text,
    fixed_params,
    fresh_registry,
)

CONTEXT: dict[str, Any] = {
    "as_of": "2024-06-01",
    "cash": 1_500.0,
    "securities": [{"symbol": "X", "price": 100.0, "country": "US", "industry": "tech"}],
    "targets": {"by_security": {"X": 0.9}},
}
#: Buy 27 costs 2,700 (more than the cash) and has the highest priority; 15 and 4 fit.
SIZES = [
    ActionSpec(side="buy", symbol="X", quantity=27, priority=0.9),
    ActionSpec(side="buy", symbol="X", quantity=15, priority=0.5),
    ActionSpec(side="buy", symbol="X", quantity=4, priority=0.4),
]


def plan_with(variants: str) -> Any:
    text = config_text(
        {"priority_threshold": 0.0, "candidate_variants": variants},
        {
            "opportunity_calculators": {"fixed": fixed_params(SIZES)},
            "sequence_generators": {"combinatorial": None},
        },
    )
    return build_engine(text, fresh_registry()).run(OBJECTIVE, CONTEXT)


def test_a_smaller_size_the_cash_pays_for_is_planned() -> None:
    result = plan_with("all")
    assert [(s.action, s.params["quantity"]) for s in result.plan.steps] == [("buy", 15)]
    assert result.plan.metrics["improvement"] > 0


def test_the_old_rule_keeps_only_the_unaffordable_size_and_plans_nothing() -> None:
    result = plan_with("best")
    assert result.plan.steps == []
    assert any("feasible" in warning for warning in result.warnings)


@pytest.mark.parametrize("variants", ["all", "best"])
def test_sequences_differing_only_in_size_are_all_evaluated(variants: str) -> None:
    result = plan_with(variants)
    assert result.sequences_evaluated == (3 if variants == "all" else 1)
