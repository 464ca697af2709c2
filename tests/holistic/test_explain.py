"""Why this plan: the engine's explanation on real modules and the real portfolio domain.

Every count adds up stage by stage, the candidates are exactly what each calculator returned
(as the engine cut them), an empty plan names the rule that stopped the closest blocked plan,
and nothing is collected unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from planforge.contract import EXPLAIN_CONTEXT_KEY, Run
from planforge.holistic import EngineResult, Explanation, ModuleRegistry
from planforge.holistic._explain import BLOCKED_SHOWN, ScoresIfAllowed
from planforge.holistic.modules import Action, ActionSequence, PatternGenerator
from planforge.portfolio.domain import PortfolioDomain
from planforge.portfolio.errors import ContextError
from planforge.portfolio.planner import HolisticPortfolioPlanner
from tests.holistic._engine_support import (
    ActionSpec,
    build_engine,
    config_text,
    fixed_params,
    fresh_registry,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = json.loads((ROOT / "examples" / "portfolio.json").read_text())
OBJECTIVE = "Rebalance my portfolio"


def small_portfolio(cash: float) -> dict[str, Any]:
    """AAA held (10 at 1000), BBB not held (10 each) and bought five days ago."""
    return {
        "base_currency": "EUR",
        "as_of": "2025-06-30",
        "cash": cash,
        "positions": [
            {
                "symbol": "AAA",
                "quantity": 10,
                "average_price": 900.0,
                "current_price": 1000.0,
                "currency": "EUR",
                "first_bought": "2020-01-02",
            }
        ],
        "securities": [
            {"symbol": "AAA", "country": "US", "industry": "tech", "price": 1000.0},
            {"symbol": "BBB", "country": "DE", "industry": "health", "price": 10.0},
            {"symbol": "CCC", "country": "FR", "industry": "energy", "price": 1000.0},
        ],
        "restrictions": {"recent_buys": {"BBB": "2025-06-25"}},
        "targets": {"by_security": {"AAA": 0.4, "BBB": 0.3, "CCC": 0.3}},
    }


class ListedPattern(PatternGenerator):
    """Returns the sequences its params list, as (side, symbol) pairs of the candidates, so a
    test can hand the feasibility stage a sequence too deep or naming a symbol twice."""

    name = "listed"
    version = "1.0.0"
    author = "tests"
    description = "Sequences listed in its params."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        sequences: tuple[tuple[tuple[str, str], ...], ...] = ()

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        by_identity = {a.identity(): a for actions in candidates.values() for a in actions}
        return [tuple(by_identity[pair] for pair in listed) for listed in params.sequences]


def registry() -> ModuleRegistry:
    made = fresh_registry()
    made.register(ListedPattern)
    return made


def explained(text: str, context: Mapping[str, Any]) -> tuple[EngineResult, Explanation]:
    result = build_engine(text, registry()).run(OBJECTIVE, dict(context), explain=True)
    assert result.explanation is not None
    return result, result.explanation


def assert_counts_add_up(result: EngineResult, explanation: Explanation) -> None:
    """Every sequence is accounted for, from the generators to the evaluation."""
    for report in explanation.generators:
        assert report.produced == report.new + report.repeated + report.cut, report
    made = sum(report.new for report in explanation.generators)
    assert made == result.sequences_generated
    flowing = made
    for report in explanation.filters:
        assert report.received == flowing, report
        assert report.to_dict()["dropped"] == report.received - report.kept >= 0
        flowing = report.kept
    shape = explanation.feasibility
    assert shape.received == flowing
    dropped = shape.too_deep + shape.repeated_symbol + shape.low_priority
    assert shape.received == shape.kept + dropped
    evaluation = explanation.evaluation.to_dict()
    assert evaluation["evaluated"] == shape.kept == result.sequences_evaluated
    assert evaluation["evaluated"] == evaluation["feasible"] + evaluation["infeasible"]
    assert evaluation["feasible"] == result.feasible_sequences


# -- the whole pipeline on the example ---------------------------------------------------------


def test_counts_add_up_at_every_stage_on_the_example() -> None:
    result = HolisticPortfolioPlanner().run(OBJECTIVE, EXAMPLE, explain=True)
    explanation = result.explanation
    assert explanation is not None
    assert_counts_add_up(result, explanation)
    data = explanation.to_dict()
    assert result.plan.explanation == data  # the plan carries the same data
    assert data["sequences"] == result.sequences_generated
    assert data["plan_steps"] == len(result.plan.steps) > 0
    assert data["blocked"] == []  # a plan was found: nothing to say about blocked ones
    assert data["current_score"] == pytest.approx(result.plan.metrics["current_score"])
    assert data["evaluation"]["best_score"] == pytest.approx(result.plan.score)
    assert {report.module.split(".")[0] for report in explanation.generators} == {
        "pattern_generators",
        "sequence_generators",
    }
    json.dumps(data, allow_nan=False)  # plain, finite JSON data


def test_the_candidates_are_what_each_calculator_returned() -> None:
    planner = HolisticPortfolioPlanner()
    engine = planner.engine("default")
    bound = engine.config.planner.max_opportunities_per_category
    context = planner.domain.parse_context(EXAMPLE)
    first = engine.run(OBJECTIVE, EXAMPLE, explain=True).explanation
    assert first is not None
    enabled = engine.config.enabled_classes("opportunity_calculators")
    assert [r.module for r in first.calculators] == [
        f"opportunity_calculators.{name}" for name, _, _ in enabled
    ]
    for report, (_, cls, params) in zip(first.calculators, enabled, strict=True):
        returned = cls().calculate(context, params)
        ranked = sorted(returned, key=lambda a: (-a.priority, a.side, a.key))[:bound]
        assert report.candidates == tuple(ranked), report.module
        assert report.returned == len(returned)
        assert not report.from_cache
        assert not report.failed
        listed = report.to_dict()["candidates"]
        assert [(c["side"], c["symbol"], c["quantity"]) for c in listed] == [
            (a.side, a.key, a.quantity) for a in ranked
        ]
        values = [c["value"] for c in listed]
        assert values == pytest.approx([a.value for a in ranked])
    kept = first.candidates_kept
    assert kept == min(first.candidates_offered, engine.config.planner.max_candidates)
    # the next run reads the calculation cache: the same candidates, how many unknown
    again = engine.run(OBJECTIVE, EXAMPLE, explain=True).explanation
    assert again is not None
    assert [r.candidates for r in again.calculators] == [r.candidates for r in first.calculators]
    assert all(r.from_cache and r.returned is None for r in again.calculators)


def test_nothing_is_collected_unless_asked() -> None:
    planner = HolisticPortfolioPlanner()
    result = planner.run(OBJECTIVE, EXAMPLE)
    assert result.explanation is None
    assert result.plan.explanation is None
    assert "explanation" not in result.plan.model_dump_json()  # as before the field existed


def test_the_run_protocol_and_the_context_key_ask_too() -> None:
    planner = HolisticPortfolioPlanner()
    by_run = planner.plan(OBJECTIVE, EXAMPLE, run=Run("r1", explain=True))
    assert by_run.explanation is not None
    by_key = planner.plan(OBJECTIVE, {**EXAMPLE, EXPLAIN_CONTEXT_KEY: True})
    assert by_key.explanation is not None
    assert by_key.steps == by_run.steps
    assert planner.plan(OBJECTIVE, {**EXAMPLE, EXPLAIN_CONTEXT_KEY: False}).explanation is None
    with pytest.raises(ContextError, match="planner_explain: must be true or false"):
        planner.plan(OBJECTIVE, {**EXAMPLE, EXPLAIN_CONTEXT_KEY: "yes"})


# -- stages that drop ------------------------------------------------------------------------


def test_filters_and_caps_are_counted_where_they_drop() -> None:
    text = config_text(
        {"max_sequences": 3000, "max_patterns_per_generator": 100},
        {
            "opportunity_calculators": {"flood_a": None},
            "pattern_generators": {"flood_pattern": None},
            "sequence_generators": {"flood_generator": None},
            "filters": {"reject_all": None},
        },
    )
    result, explanation = explained(text, small_portfolio(100.0))
    assert_counts_add_up(result, explanation)
    pattern, generator = explanation.generators
    assert (pattern.produced, pattern.new, pattern.cut) == (5000, 100, 4900)
    assert (generator.new, generator.cut) == (2900, 2100)  # the engine's max_sequences
    (reject,) = explanation.filters
    assert (reject.received, reject.kept) == (3000, 0)
    assert explanation.evaluation.evaluated == 0
    assert not result.plan.steps
    assert explanation.blocked == ()


def test_feasibility_counts_each_reason_it_drops() -> None:
    specs = [
        ActionSpec(side="sell", symbol="AAA", quantity=1, priority=0.9),
        ActionSpec(side="buy", symbol="AAA", quantity=1, priority=0.9),
        ActionSpec(side="buy", symbol="CCC", quantity=1, priority=0.8),
        ActionSpec(side="buy", symbol="BBB", quantity=1, priority=0.1),
    ]
    listed = [
        [["sell", "AAA"], ["buy", "AAA"]],  # a symbol twice
        [["sell", "AAA"], ["buy", "CCC"], ["buy", "BBB"]],  # deeper than max_depth 2
        [["buy", "BBB"]],  # mean priority 0.1 < 0.3
        [["sell", "AAA"], ["buy", "CCC"]],  # kept
    ]
    text = config_text(
        {"max_depth": 2, "priority_threshold": 0.3},
        {
            "opportunity_calculators": {"fixed": fixed_params(specs)},
            "pattern_generators": {"listed": {"sequences": listed}},
        },
    )
    result, explanation = explained(text, small_portfolio(100.0))
    assert_counts_add_up(result, explanation)
    shape = explanation.feasibility
    assert (shape.received, shape.kept) == (4, 1)
    assert (shape.too_deep, shape.repeated_symbol, shape.low_priority) == (1, 1, 1)
    assert shape.to_dict()["max_depth"] == 2


# -- an empty plan: the closest blocked plan -------------------------------------------------


def test_an_empty_plan_names_the_cash_rule_and_the_steps_of_the_only_buy() -> None:
    text = config_text(
        {"max_depth": 2},
        {
            "opportunity_calculators": {
                "fixed": fixed_params([ActionSpec(side="buy", symbol="CCC", quantity=1)])
            },
            "sequence_generators": {"combinatorial": None},
        },
    )
    result, explanation = explained(text, small_portfolio(100.0))
    assert result.plan.steps == []
    assert explanation.evaluation.to_dict()["infeasible"] == 1
    (blocked,) = explanation.blocked
    assert [(a.side, a.key, a.quantity) for a in blocked.steps] == [("buy", "CCC", 1.0)]
    assert "cash 100.00 EUR cannot cover 1,000.00" in blocked.reason
    assert blocked.reason.startswith("step 1 (buy CCC)")
    assert isinstance(blocked.score_if_allowed, float)
    assert explanation.blocked_scored == 1
    data = result.plan.explanation
    assert data is not None
    assert data["plan_steps"] == 0
    assert data["blocked"][0]["steps"][0]["value"] == pytest.approx(1000.0)
    assert "cannot cover" in data["blocked"][0]["reason"]


def test_blocked_plans_are_ordered_by_their_score_if_allowed() -> None:
    """Cash short for CCC, BBB in its buy cooldown: both named, the better score first."""
    specs = [
        ActionSpec(side="buy", symbol="CCC", quantity=1, priority=0.9),
        ActionSpec(side="buy", symbol="BBB", quantity=5, priority=0.5),
    ]
    text = config_text(
        {"max_depth": 2},
        {
            "opportunity_calculators": {"fixed": fixed_params(specs)},
            "sequence_generators": {"combinatorial": None},
        },
    )
    result, explanation = explained(text, small_portfolio(100.0))
    assert result.plan.steps == []
    refused = explanation.evaluation.to_dict()["infeasible"]
    assert explanation.blocked_scored == refused == 3  # CCC, BBB, and both in either order
    shown = explanation.blocked
    assert len(shown) == min(BLOCKED_SHOWN, refused)
    scores = [plan.score_if_allowed for plan in shown]
    assert all(isinstance(score, float) for score in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    reasons = " | ".join(plan.reason for plan in shown)
    assert "BBB bought 5 days ago (buy cooldown 30)" in reasons
    assert "cannot cover" in reasons
    # the score if allowed is the domain's own score with no rule applied
    domain = PortfolioDomain()
    assert isinstance(domain, ScoresIfAllowed)
    context = domain.parse_context(small_portfolio(100.0))
    again = domain.scores_if_allowed(context, [plan.steps for plan in shown], None)
    assert list(again) == pytest.approx(scores)


def test_a_domain_that_cannot_score_refused_sequences_orders_them_by_priority() -> None:
    class PlainDomain:
        """The portfolio domain without `scores_if_allowed`."""

        Settings = PortfolioDomain.Settings

        def __init__(self) -> None:
            self._inner = PortfolioDomain()

        def __getattr__(self, name: str) -> Any:
            if name == "scores_if_allowed":
                raise AttributeError(name)
            return getattr(self._inner, name)

    specs = [
        ActionSpec(side="buy", symbol="CCC", quantity=1, priority=0.4),
        ActionSpec(side="buy", symbol="BBB", quantity=5, priority=0.9),
    ]
    text = config_text(
        {"max_depth": 1},
        {
            "opportunity_calculators": {"fixed": fixed_params(specs)},
            "sequence_generators": {"combinatorial": None},
        },
    )
    engine = build_engine(text, registry(), domain=PlainDomain())  # type: ignore[arg-type]
    explanation = engine.run(OBJECTIVE, small_portfolio(100.0), explain=True).explanation
    assert explanation is not None
    assert [plan.steps[0].key for plan in explanation.blocked] == ["BBB", "CCC"]
    assert all(plan.score_if_allowed is None for plan in explanation.blocked)
    assert explanation.blocked_scored == 0
