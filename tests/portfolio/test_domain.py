"""The portfolio domain as the engine sees it: context, digest, simulation and the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planforge.contract import Plan
from planforge.holistic import Simulation
from planforge.holistic.modules import Action
from planforge.portfolio.context import load_context, parse_context
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings, PortfolioSimulation
from planforge.portfolio.errors import ContextError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"
DOMAIN = PortfolioDomain()
FREE = PortfolioSettings(min_hold_days=0, sell_cooldown_days=0, buy_cooldown_days=0)


def raw_context(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "base_currency": "EUR",
        "as_of": "2025-06-30",
        "cash": 100.0,
        "fx_rates": {"USD": 0.5},
        "positions": [
            {
                "symbol": "ACME",
                "quantity": 20,
                "average_price": 60,
                "current_price": 100,
                "currency": "USD",
            },
            {"symbol": "BETA", "quantity": 10, "average_price": 50, "current_price": 50},
        ],
        "securities": [
            {"symbol": "ACME", "country": "US", "currency": "USD", "scores": {"q": 0.3}},
            {"symbol": "BETA", "country": "DE", "scores": {"q": 0.9}},
            {"symbol": "GAMA", "country": "DE", "price": 20.0, "scores": {"q": 0.9}},
        ],
        "targets": {"by_country": {"US": 0.3, "DE": 0.7}},
        "costs": {"fixed": 2.0, "percent": 0.001},
    }
    raw.update(overrides)
    return raw


def act(
    side: str, key: str, quantity: float, reason: str = "", tags: tuple[str, ...] = ()
) -> Action:
    return Action(side, key, quantity, 0.0, 0.0, 0.6, "test", reason=reason, tags=tags)


def plan_for(simulation: Simulation, warnings: tuple[str, ...] = ()) -> Plan:
    return DOMAIN.build_plan(
        "Rebalance", simulation, planner_name="holistic", planner_version="1.0.0",
        warnings=warnings,
    )  # fmt: skip


def test_parse_context_names_the_bad_field() -> None:
    raw = raw_context()
    raw["positions"][0]["quantity"] = -1
    with pytest.raises(ContextError, match=r"positions\[0\]\.quantity"):
        DOMAIN.parse_context(raw)


def test_context_digest_is_stable_and_content_based() -> None:
    first = DOMAIN.context_digest(parse_context(raw_context()))
    assert first == DOMAIN.context_digest(parse_context(raw_context()))
    assert first != DOMAIN.context_digest(parse_context(raw_context(cash=101.0)))


def test_domain_accepts_raw_mappings_and_default_settings() -> None:
    evaluation = DOMAIN.evaluate(raw_context(), [()])
    assert evaluation.feasible.tolist() == [True]
    assert DOMAIN.Settings is PortfolioSettings


def test_evaluate_is_aligned_with_the_batch() -> None:
    context = parse_context(raw_context())
    sequences = [(act("sell", "ACME", 5),), (act("buy", "GAMA", 100),), ()]
    evaluation = DOMAIN.evaluate(context, sequences, FREE)
    assert evaluation.scores.shape == evaluation.feasible.shape == evaluation.costs.shape == (3,)
    assert evaluation.feasible.tolist() == [True, False, True]
    assert evaluation.costs[0] == pytest.approx(2.0 + 0.001 * 250.0)
    assert DOMAIN.evaluate(context, [], FREE).scores.shape == (0,)


def test_plan_steps_are_the_executed_trades_with_narratives() -> None:
    context = parse_context(raw_context())
    sequence = (
        act("sell", "ACME", 12, tags=("windfall",)),
        act("buy", "GAMA", 20, reason="rebalance towards DE"),
    )
    simulation = DOMAIN.simulate(context, sequence, FREE)
    assert isinstance(simulation, PortfolioSimulation)
    assert simulation.feasible
    assert simulation.end_state_score > simulation.current_score
    plan = plan_for(simulation, ("engine: a module timed out",))
    assert [step.id for step in plan.steps] == ["1", "2"]
    assert [step.action for step in plan.steps] == ["sell", "buy"]
    sell, buy = plan.steps
    assert sell.description == "Sell 12 ACME (USD) for 600.00 EUR: take profit on a 67% gain"
    assert buy.description == "Buy 20 GAMA (EUR) for 400.00 EUR: rebalance towards DE"
    assert sell.params == {
        "symbol": "ACME", "quantity": 12, "price": 100.0, "currency": "USD",
        "value_base": 600.0, "cost": 2.6,
    }  # fmt: skip
    assert sell.depends_on == []
    assert buy.depends_on == ["1"]
    assert sell.tags == ["windfall"]
    metrics = plan.metrics
    assert metrics["improvement"] == metrics["end_state_score"] - metrics["current_score"]
    assert metrics["current_score"] == simulation.current_score
    assert metrics["cash_generated"] == pytest.approx(600 - 2.6)
    assert metrics["cash_required"] == pytest.approx(400 + 2.4)
    assert metrics["costs"] == pytest.approx(5.0)
    assert metrics["feasible"] == 1.0
    assert {"allocation_fit", "diversification", "quality", "cost_penalty"} <= set(metrics)
    assert plan.score == metrics["end_state_score"]
    assert plan.warnings == ["engine: a module timed out"]
    # the plan is plain JSON and back
    assert Plan.model_validate_json(plan.model_dump_json()).steps == plan.steps


def test_plan_metrics_match_evaluate() -> None:
    context = parse_context(raw_context())
    sequence = (act("sell", "ACME", 12), act("buy", "GAMA", 20))
    scores = DOMAIN.evaluate(context, [(), sequence], FREE).scores
    plan = plan_for(DOMAIN.simulate(context, sequence, FREE))
    assert plan.metrics["current_score"] == scores[0]
    assert plan.metrics["end_state_score"] == scores[1]


def test_no_improvement_gives_an_empty_plan_that_says_why() -> None:
    context = parse_context(raw_context())
    worse = (act("sell", "BETA", 10),)  # sells the DE position the targets want
    simulation = DOMAIN.simulate(context, worse, FREE)
    assert simulation.end_state_score < simulation.current_score
    plan = plan_for(simulation)
    assert plan.steps == []
    assert plan.metrics["improvement"] == 0.0
    assert plan.metrics["end_state_score"] == plan.metrics["current_score"]
    assert any(w.startswith("no sequence improves the score") for w in plan.warnings)


def test_the_empty_simulation_is_an_empty_plan_with_a_reason() -> None:
    context = parse_context(raw_context())
    plan = plan_for(DOMAIN.simulate(context, (), FREE))
    assert plan.steps == []
    assert plan.metrics["feasible"] == 1.0
    assert plan.warnings
    assert "current score" in plan.warnings[0]
    engine_said = plan_for(DOMAIN.simulate(context, (), FREE), ("no sequence improves it",))
    assert engine_said.warnings == ["no sequence improves it"]


def test_an_infeasible_simulation_never_lists_unpaid_steps() -> None:
    context = parse_context(raw_context())
    simulation = DOMAIN.simulate(context, (act("sell", "BETA", 2), act("buy", "GAMA", 50)), FREE)
    assert not simulation.feasible
    assert [a.key for a in simulation.executed] == ["BETA"]
    assert "step 2 (buy GAMA)" in simulation.reason
    plan = plan_for(simulation)
    assert plan.steps == []
    assert plan.metrics["feasible"] == 0.0
    assert any("infeasible" in w and "cannot cover" in w for w in plan.warnings)


def test_a_plain_simulation_still_makes_a_plan() -> None:
    action = Action("buy", "GAMA", 5, 20.0, 100.0, 0.5, "x", currency="EUR")
    simulation = Simulation(
        executed=(action,), feasible=True, end_state_score=0.8, current_score=0.7,
        cash_before=100.0, cash_after=0.0, cash_required=100.0, cash_generated=0.0, costs=0.0,
    )  # fmt: skip
    plan = plan_for(simulation)
    assert plan.steps[0].description.startswith("Buy 5 GAMA (EUR) for 100.00 EUR")
    assert plan.metrics["improvement"] == pytest.approx(0.1)


def test_example_portfolio_is_realistic_and_valid() -> None:
    context = load_context(EXAMPLE)
    assert 30 <= len(context.securities) <= 40
    assert 18 <= len(context.positions) <= 22
    countries = {s.country for s in context.securities}
    assert {"US", "DE", "FR", "NL", "GB", "CH", "JP"} <= countries
    assert {"USD", "GBP", "CHF", "JPY"} <= set(context.fx_rates)
    assert context.base_currency == "EUR"
    assert context.min_trade_value == 250
    gains = [p.current_price / p.average_price - 1 for p in context.positions]
    assert any(g > 0.5 for g in gains)
    assert any(g < -0.2 for g in gains)
    assert context.restrictions.ineligible
    assert context.restrictions.recent_buys
    assert context.restrictions.recent_sells
    assert context.targets.by_country
    assert context.targets.by_industry
    assert context.targets.by_security
    assert json.loads(EXAMPLE.read_text())["costs"] == {"fixed": 2.0, "percent": 0.001}


def test_example_portfolio_evaluates_and_plans() -> None:
    context = load_context(EXAMPLE)
    sells = (act("sell", "NVDA", 20), act("sell", "SAP", 10))
    buys = (act("buy", "IWDA", 40), act("buy", "TTE", 30), act("buy", "7203", 100))
    simulation = DOMAIN.simulate(context, (*sells, *buys), PortfolioSettings())
    assert simulation.feasible, simulation.reason
    evaluation = DOMAIN.evaluate(context, [(*sells, *buys)], PortfolioSettings())
    assert simulation.end_state_score == evaluation.scores[0]
    assert isinstance(simulation, PortfolioSimulation)
    jpy = next(trade for trade in simulation.trades if trade.symbol == "7203")
    assert jpy.currency == "JPY"
    assert jpy.value_base == pytest.approx(100 * 2485.0 * 0.00589)
    assert jpy.cost == pytest.approx(2.0 + 0.001 * jpy.value_base)
    # the ineligible symbol, the recent buy (cooldown and minimum hold) are refused
    refused = [(act("sell", "BAYN", 10),), (act("buy", "6954", 100),), (act("sell", "6954", 100),)]
    assert not np.any(DOMAIN.evaluate(context, refused, PortfolioSettings()).feasible)
