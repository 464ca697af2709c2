"""The holistic engine end to end on the portfolio domain: it finds the best plan among every
sequence, and every plan keeps the money rules and never loses score."""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planforge.contract import Plan
from planforge.holistic import (
    EngineResult,
)
from planforge.holistic.modules import (
    Action,
    ActionSequence,
)
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.domain import PortfolioSettings
from planforge.portfolio.planner import preset_text
from tests.holistic._engine_support import (
    DOMAIN,
    EXAMPLE,
    OBJECTIVE,
    TOLERANCE,
    ActionSpec,
    build_engine,
    builtin_registry,
    candidate_specs,
    config_text,
    contexts,
    fixed_params,
    resilience_context,
    to_action,
    unit_price,
)

# -- 1. exhaustive check -----------------------------------------------------------------------


def brute_force(
    context: PortfolioContext,
    actions: Sequence[Action],
    depth: int,
    chosen: PortfolioSettings,
) -> tuple[float, list[ActionSequence]]:
    """The best score over EVERY ordered selection of distinct candidates of length 0..depth
    (the empty one is the portfolio as it is), and the feasible sequences reaching it."""
    sequences: list[ActionSequence] = [()]
    for length in range(1, depth + 1):
        sequences.extend(itertools.permutations(actions, length))
    evaluation = DOMAIN.evaluate(context, sequences, chosen)
    scores = [
        float(score) for score, ok in zip(evaluation.scores, evaluation.feasible, strict=True) if ok
    ]
    assert evaluation.feasible[0], "the empty sequence is always feasible"
    best = max(scores)
    winners = [
        sequence
        for sequence, score, ok in zip(
            sequences, evaluation.scores, evaluation.feasible, strict=True
        )
        if ok and abs(float(score) - best) <= TOLERANCE
    ]
    return best, winners


def plan_sequence(plan: Plan, actions: Sequence[Action]) -> ActionSequence:
    """The candidate actions a plan's steps execute, in order."""
    by_identity = {action.identity(): action for action in actions}
    return tuple(by_identity[(step.action, str(step.params["symbol"]))] for step in plan.steps)


def exhaustive_config(specs: Sequence[ActionSpec], depth: int) -> str:
    return config_text(
        {
            "max_depth": depth,
            "priority_threshold": 0.0,
            "max_opportunities_per_category": 10,
            "module_timeout_s": 0,
        },
        {
            "opportunity_calculators": {"fixed": fixed_params(specs)},
            "sequence_generators": {"combinatorial": None},  # the depth is [planner]'s
        },
    )


def check_against_brute_force(
    raw: Mapping[str, Any], specs: Sequence[ActionSpec], depth: int
) -> EngineResult:
    engine = build_engine(exhaustive_config(specs, depth))
    result = engine.run(OBJECTIVE, raw)
    context = parse_context(raw)
    actions = [to_action(context, spec) for spec in specs]
    chosen = engine.config.domain
    assert isinstance(chosen, PortfolioSettings)
    best, winners = brute_force(context, actions, depth, chosen)
    metrics = result.plan.metrics
    assert metrics["end_state_score"] == pytest.approx(best, abs=TOLERANCE)
    assert result.plan.score == pytest.approx(best, abs=TOLERANCE)
    if result.plan.steps:
        sequence = plan_sequence(result.plan, actions)
        replayed = DOMAIN.simulate(context, sequence, chosen)
        assert replayed.feasible
        assert replayed.end_state_score == pytest.approx(best, abs=TOLERANCE)
        assert len(sequence) <= depth
        assert set(sequence) in [set(w) for w in winners]
    else:
        assert metrics["end_state_score"] == metrics["current_score"]
        assert best <= metrics["current_score"] + TOLERANCE
    return result


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_engine_best_equals_brute_force_over_every_sequence(data: st.DataObject) -> None:
    raw = data.draw(contexts(), label="context")
    specs = data.draw(candidate_specs(raw), label="candidates")
    depth = data.draw(st.integers(1, 3), label="depth")
    check_against_brute_force(raw, specs, depth)


def test_brute_force_check_on_a_known_instance_finds_a_real_plan() -> None:
    """A hand-made case where the best plan needs a sell to fund two buys, so the exhaustive
    comparison above is known to cover non-empty, multi-step plans too."""
    raw = resilience_context()
    raw["cash"] = 0.0
    specs = [
        ActionSpec(side="sell", symbol="AAA", quantity=5, priority=0.1),
        ActionSpec(side="buy", symbol="BBB", quantity=4, priority=0.9),
        ActionSpec(side="buy", symbol="CCC", quantity=4, priority=0.9),
    ]
    result = check_against_brute_force(raw, specs, depth=3)
    steps = [(s.action, s.params["symbol"]) for s in result.plan.steps]
    assert steps[0] == ("sell", "AAA")
    assert sorted(steps[1:]) == [("buy", "BBB"), ("buy", "CCC")]


# -- 2. properties of every plan ---------------------------------------------------------------


def property_config(specs: Sequence[ActionSpec]) -> str:
    """The default preset (every built-in module), shallower and inline, plus the fixed
    calculator feeding candidates that may be unaffordable or oversized."""
    document = tomllib.loads(preset_text("default"))
    document["planner"].update(
        {"max_depth": 3, "module_timeout_s": 0, "max_opportunities_per_category": 10}
    )
    document["opportunity_calculators"]["fixed"] = {
        "enabled": True,
        "params": fixed_params(specs),
    }
    return tomli_w.dumps(document)


def as_float(value: Any) -> float:
    assert isinstance(value, int | float), f"expected a number, got {value!r}"
    return float(value)


def check_plan_properties(raw: Mapping[str, Any], plan: Plan) -> None:
    context = parse_context(raw)
    metrics = plan.metrics
    held = {p.symbol: p.quantity for p in context.positions}
    cash = metrics["cash_before"]
    assert cash == pytest.approx(context.cash)
    required = generated = 0.0
    symbols: list[str] = []
    for number, step in enumerate(plan.steps, start=1):
        assert step.id == str(number)
        params = step.params
        symbol = str(params["symbol"])
        value = as_float(params["value_base"])
        cost = as_float(params["cost"])
        quantity = as_float(params["quantity"])
        price, currency = unit_price(context, symbol)
        assert params["currency"] == currency
        assert value == pytest.approx(quantity * price * context.fx(currency), rel=1e-6)
        assert cost == pytest.approx(context.costs.fixed + context.costs.percent * value, abs=1e-5)
        if step.action == "sell":
            assert quantity <= held[symbol] + 1e-9, f"step {step.id} sells more than is held"
            cash += value - cost
            generated += value - cost
        else:
            assert step.action == "buy"
            cash -= value + cost
            required += value + cost
        assert cash >= -1e-6, f"step {step.id} spends cash the portfolio does not have"
        symbols.append(symbol)
    assert len(symbols) == len(set(symbols)), "a symbol is traded twice in one plan"
    bought = {str(s.params["symbol"]) for s in plan.steps if s.action == "buy"}
    sold = {str(s.params["symbol"]) for s in plan.steps if s.action == "sell"}
    assert not bought & sold
    assert metrics["cash_required"] == pytest.approx(required, abs=1e-4)
    assert metrics["cash_generated"] == pytest.approx(generated, abs=1e-4)
    assert metrics["cash_after"] == pytest.approx(cash, abs=1e-4)
    assert metrics["feasible"] == 1.0
    current, end = metrics["current_score"], metrics["end_state_score"]
    assert end >= current
    assert metrics["improvement"] == end - current
    assert plan.score == end
    if plan.steps:
        assert metrics["improvement"] > 0


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_plan_respects_cash_holdings_and_never_loses_score(data: st.DataObject) -> None:
    raw = data.draw(contexts(), label="context")
    specs = data.draw(candidate_specs(raw), label="candidates")
    registry = builtin_registry()
    engine = build_engine(property_config(specs), registry)
    result = engine.run(OBJECTIVE, raw)
    check_plan_properties(raw, result.plan)
    assert result.simulation.feasible
    settings_used = engine.config.domain
    empty = DOMAIN.simulate(parse_context(raw), (), settings_used)
    assert result.plan.metrics["current_score"] == pytest.approx(empty.end_state_score, abs=1e-12)


def test_properties_hold_on_the_sample_portfolio_with_every_preset() -> None:
    raw = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for preset in ("default", "conservative", "aggressive"):
        engine = build_engine(preset_text(preset), builtin_registry())
        try:
            result = engine.run(OBJECTIVE, raw)
        finally:
            engine.guard.close()
        assert result.plan.steps, f"{preset}: the sample portfolio should get a plan"
        check_plan_properties(raw, result.plan)
