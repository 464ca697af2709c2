"""Vectorised evaluation: known answers, FX, costs, feasibility rules, agreement with a plain
per-sequence Python evaluation written here, chunking, and property tests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.domain import PortfolioDomain
from planforge.portfolio.evaluation import PortfolioSettings, action_problem, model_for

DOMAIN = PortfolioDomain()
FREE = PortfolioSettings(min_hold_days=0, sell_cooldown_days=0, buy_cooldown_days=0)


def small_context(**overrides: Any) -> PortfolioContext:
    """Cash 1000 EUR; A: 10 x 100 EUR (1000), B: 5 x 200 USD at 0.5 (500 EUR)."""
    raw: dict[str, Any] = {
        "base_currency": "EUR",
        "as_of": "2025-06-30",
        "cash": 1000.0,
        "fx_rates": {"USD": 0.5},
        "positions": [
            {"symbol": "A", "quantity": 10, "average_price": 80, "current_price": 100},
            {
                "symbol": "B",
                "quantity": 5,
                "average_price": 190,
                "current_price": 200,
                "currency": "USD",
            },
        ],
        "securities": [
            {"symbol": "A", "country": "DE", "industry": "Tech", "scores": {"quality": 0.8}},
            {
                "symbol": "B",
                "country": "US",
                "industry": "Health",
                "currency": "USD",
                "scores": {"quality": 0.4},
            },
            {
                "symbol": "C",
                "country": "US",
                "industry": "Tech",
                "currency": "USD",
                "price": 50.0,
                "scores": {"quality": 1.0},
            },
        ],
        "targets": {"by_country": {"DE": 0.5, "US": 0.3}},
        "costs": {"fixed": 1.0, "percent": 0.01},
    }
    raw.update(overrides)
    return parse_context(raw)


def sell(symbol: str, quantity: float, price: float = 1.0) -> Action:
    return Action("sell", symbol, quantity, price, 0.0, 0.5, "test")


def buy(symbol: str, quantity: float, price: float = 1.0) -> Action:
    return Action("buy", symbol, quantity, price, 0.0, 0.5, "test")


def score_of(context: PortfolioContext, *steps: Action, chosen: PortfolioSettings = FREE) -> float:
    return float(DOMAIN.evaluate(context, [tuple(steps)], chosen).scores[0])


# ----------------------------------------------------------------------- reference


def reference(
    context: PortfolioContext, sequence: ActionSequence, chosen: PortfolioSettings
) -> tuple[float, bool, list[float]]:
    """Per-sequence Python: apply every step, check it, then score the whole end state."""
    securities = {s.symbol: s for s in context.securities}
    held = {p.symbol: p for p in context.positions}
    quantities = {p.symbol: p.quantity for p in context.positions}
    prices: dict[str, tuple[float, str]] = {}
    for s in context.securities:
        if s.symbol in held:
            prices[s.symbol] = (held[s.symbol].current_price, held[s.symbol].currency)
        elif s.price is not None:
            prices[s.symbol] = (s.price, s.currency)
    cash, costs, ok = context.cash, 0.0, True
    path: list[float] = []
    seen: set[str] = set()
    for action in sequence:
        if action_problem(model_for(context), chosen, action) is not None:
            ok = False
        if action.key in seen:
            ok = False
        seen.add(action.key)
        if action.key not in prices:
            return -math.inf, False, path
        price, currency = prices[action.key]
        value = action.quantity * price * context.fx(currency)
        cost = context.costs.fixed + context.costs.percent * value
        costs += cost
        if action.side == "sell":
            quantities[action.key] = quantities.get(action.key, 0.0) - action.quantity
            cash += value - cost
        else:
            quantities[action.key] = quantities.get(action.key, 0.0) + action.quantity
            cash -= value + cost
        path.append(cash)
        if cash < 0:
            ok = False
    if not ok:
        return -math.inf, False, path
    values = {
        symbol: quantity * prices[symbol][0] * context.fx(prices[symbol][1])
        for symbol, quantity in quantities.items()
    }
    invested = sum(values.values())
    total = invested + cash
    fits = []
    for name, label in (
        ("by_security", "symbol"),
        ("by_country", "country"),
        ("by_industry", "industry"),
    ):
        targets: Mapping[str, float] = getattr(context.targets, name)
        if not targets:
            continue
        weights = dict.fromkeys(targets, 0.0)
        for symbol, value in values.items():
            group = getattr(securities[symbol], label)
            if group in weights:
                weights[group] += value / total
        fits.append(1.0 - 0.5 * sum(abs(weights[g] - t) for g, t in targets.items()))
    allocation = sum(fits) / len(fits) if fits else 1.0
    if invested > 1e-9 * total:
        diversification = 1.0 - sum((v / invested) ** 2 for v in values.values())
        quality = sum(securities[s].quality * v for s, v in values.items()) / invested
    else:
        diversification = quality = 0.0
    weights_sum = chosen.allocation_weight + chosen.diversification_weight + chosen.quality_weight
    before = context.cash + sum(
        p.quantity * p.current_price * context.fx(p.currency) for p in context.positions
    )
    score = (
        chosen.allocation_weight * allocation
        + chosen.diversification_weight * diversification
        + chosen.quality_weight * quality
    ) / weights_sum - (chosen.cost_penalty_factor * costs / before if before > 0 else 0.0)
    return score, True, path


# ----------------------------------------------------------------------- known answers


def test_current_state_score_matches_the_hand_computed_formula() -> None:
    context = small_context()
    # T = 2500; W_DE = 0.4, W_US = 0.2 -> fit 0.9; D = 1 - (4/9 + 1/9); Q = 1000 / 1500
    expected = 0.5 * 0.9 + 0.3 * (4 / 9) + 0.2 * (2 / 3)
    assert score_of(context) == pytest.approx(expected, abs=1e-12)


def test_buy_in_a_foreign_currency_is_converted_and_charged() -> None:
    context = small_context()
    # buy 4 B at 200 USD = 400 EUR; cost 1 + 1% = 5; cash 595; B worth 900
    total = 2495.0
    fit = 1 - 0.5 * (abs(1000 / total - 0.5) + abs(900 / total - 0.3))
    diversification = 1 - (1000**2 + 900**2) / 1900**2
    quality = (0.8 * 1000 + 0.4 * 900) / 1900
    expected = 0.5 * fit + 0.3 * diversification + 0.2 * quality - 5 / 2500
    assert score_of(context, buy("B", 4)) == pytest.approx(expected, abs=1e-12)
    simulation = DOMAIN.simulate(context, (buy("B", 4),), FREE)
    assert simulation.cash_after == pytest.approx(595.0)
    assert simulation.costs == pytest.approx(5.0)
    assert simulation.cash_required == pytest.approx(405.0)


def test_sell_adds_cash_net_of_costs_at_the_context_price() -> None:
    context = small_context()
    # the action's own price (1.0) is ignored: A is held, so it trades at 100 EUR
    simulation = DOMAIN.simulate(context, (sell("A", 4, price=1.0),), FREE)
    assert simulation.feasible
    assert simulation.cash_generated == pytest.approx(400 - 5)
    assert simulation.cash_after == pytest.approx(1395.0)


def test_an_unheld_security_trades_at_its_listed_price() -> None:
    context = small_context()
    simulation = DOMAIN.simulate(context, (buy("C", 10),), FREE)
    # 10 x 50 USD x 0.5 = 250 EUR, cost 1 + 2.5
    assert simulation.cash_after == pytest.approx(1000 - 253.5)


def test_no_targets_means_a_neutral_allocation_fit() -> None:
    context = small_context(targets={})
    expected = 0.5 * 1.0 + 0.3 * (4 / 9) + 0.2 * (2 / 3)
    assert score_of(context) == pytest.approx(expected, abs=1e-12)


def test_target_sets_are_averaged() -> None:
    context = small_context(
        targets={"by_country": {"DE": 0.5, "US": 0.3}, "by_industry": {"Tech": 0.4}}
    )
    allocation = (0.9 + (1 - 0.5 * abs(0.4 - 0.4))) / 2
    expected = 0.5 * allocation + 0.3 * (4 / 9) + 0.2 * (2 / 3)
    assert score_of(context) == pytest.approx(expected, abs=1e-12)


def test_cost_penalty_factor_really_controls_the_penalty() -> None:
    context = small_context()
    step = buy("B", 4)
    base = score_of(context, step, chosen=FREE.model_copy(update={"cost_penalty_factor": 0.0}))
    heavy = score_of(context, step, chosen=FREE.model_copy(update={"cost_penalty_factor": 10.0}))
    assert base - heavy == pytest.approx(10.0 * 5.0 / 2500.0, abs=1e-12)


def test_weights_change_the_score() -> None:
    context = small_context()
    only_quality = FREE.model_copy(
        update={"allocation_weight": 0.0, "diversification_weight": 0.0, "quality_weight": 2.0}
    )
    assert score_of(context, chosen=only_quality) == pytest.approx(2 / 3, abs=1e-12)


def test_selling_everything_leaves_diversification_and_quality_at_zero() -> None:
    context = small_context()
    result = DOMAIN.simulate(context, (sell("A", 10), sell("B", 5)), FREE)
    assert result.feasible
    assert result.breakdown["diversification"] == 0.0
    assert result.breakdown["quality"] == 0.0


# ----------------------------------------------------------------------- feasibility


def test_empty_sequence_is_the_current_state() -> None:
    context = small_context()
    evaluation = DOMAIN.evaluate(context, [()], FREE)
    assert evaluation.feasible.tolist() == [True]
    assert evaluation.costs.tolist() == [0.0]
    assert DOMAIN.simulate(context, (), FREE).current_score == evaluation.scores[0]


def test_a_buy_cash_cannot_cover_makes_the_sequence_infeasible() -> None:
    context = small_context()
    # 30 B = 3000 EUR > 1000 cash: infeasible, never skipped
    evaluation = DOMAIN.evaluate(context, [(buy("B", 30),), (sell("A", 10), buy("B", 15))], FREE)
    assert evaluation.feasible.tolist() == [False, True]
    assert evaluation.scores[0] == -np.inf
    simulation = DOMAIN.simulate(context, (buy("B", 30),), FREE)
    assert not simulation.feasible
    assert simulation.executed == ()
    assert "cannot cover" in simulation.reason


def test_order_matters_a_buy_before_the_sell_that_funds_it_fails() -> None:
    context = small_context()
    funded = (sell("A", 10), buy("B", 15))  # 1000 + 990 cash, buy 1500 + 16
    unfunded = (buy("B", 15), sell("A", 10))
    feasible = DOMAIN.evaluate(context, [funded, unfunded], FREE).feasible
    assert feasible.tolist() == [True, False]


def test_cash_exactly_zero_is_still_feasible() -> None:
    context = small_context(costs={"fixed": 0.0, "percent": 0.0})
    assert DOMAIN.evaluate(context, [(buy("B", 10),)], FREE).feasible.tolist() == [True]
    assert DOMAIN.evaluate(context, [(buy("B", 10.001),)], FREE).feasible.tolist() == [False]


@pytest.mark.parametrize(
    ("sequence", "reason"),
    [
        ((sell("A", 11),), "holds 10"),
        ((sell("A", 2), sell("A", 3)), "more than once"),
        ((sell("A", 2), buy("A", 1)), "more than once"),
        ((buy("ZZZ", 1),), "not among"),
        ((Action("hold", "A", 1, 1, 1, 0.5, "x"),), "unknown side"),
        ((buy("A", 0),), "positive"),
        ((buy("A", float("nan")),), "positive"),
    ],
)
def test_infeasible_sequences_say_why(sequence: ActionSequence, reason: str) -> None:
    context = small_context()
    assert DOMAIN.evaluate(context, [sequence], FREE).feasible.tolist() == [False]
    simulation = DOMAIN.simulate(context, sequence, FREE)
    assert not simulation.feasible
    assert reason in simulation.reason
    assert simulation.end_state_score == -math.inf


def test_rules_from_settings_and_restrictions() -> None:
    context = small_context(
        restrictions={
            "ineligible": ["B"],
            "recent_buys": {"C": "2025-06-20"},
            "recent_sells": {"A": "2025-03-01"},
        }
    )
    strict = PortfolioSettings()
    cases = {
        (sell("A", 1),): False,  # sold 121 days ago, cooldown 180
        (buy("B", 1),): False,  # ineligible
        (buy("C", 10),): False,  # bought 10 days ago, cooldown 30
    }
    for sequence, expected in cases.items():
        assert DOMAIN.evaluate(context, [sequence], strict).feasible.tolist() == [expected]
    relaxed = strict.model_copy(update={"sell_cooldown_days": 100, "buy_cooldown_days": 5})
    assert DOMAIN.evaluate(context, [(sell("A", 1),)], relaxed).feasible.tolist() == [True]
    assert DOMAIN.evaluate(context, [(buy("C", 10),)], relaxed).feasible.tolist() == [True]


def test_minimum_hold_and_maximum_loss() -> None:
    raw = small_context().model_dump(mode="json")
    raw["positions"][0]["first_bought"] = "2025-05-01"  # held 60 days
    raw["positions"][1]["average_price"] = 300.0  # B is down 33%
    context = parse_context(raw)
    rules = PortfolioSettings()
    assert "minimum 90" in str(action_problem(model_for(context), rules, sell("A", 1)))
    assert "loss" in str(action_problem(model_for(context), rules, sell("B", 1)))
    relaxed = rules.model_copy(update={"min_hold_days": 30, "max_loss": -0.5})
    assert DOMAIN.evaluate(context, [(sell("A", 3),), (sell("B", 1),)], relaxed).feasible.all()


def test_allow_buy_and_allow_sell_combine_settings_and_context() -> None:
    context = small_context()
    no_sell = FREE.model_copy(update={"allow_sell": False})
    assert DOMAIN.evaluate(context, [(sell("A", 1),)], no_sell).feasible.tolist() == [False]
    assert DOMAIN.evaluate(context, [(buy("B", 1),)], no_sell).feasible.tolist() == [True]
    closed = small_context(restrictions={"allow_buy": False})
    assert DOMAIN.evaluate(closed, [(buy("B", 1),)], FREE).feasible.tolist() == [False]


def test_min_trade_value_setting_overrides_the_context() -> None:
    context = small_context(min_trade_value=150.0)
    small = (sell("A", 1),)  # 100 EUR
    assert DOMAIN.evaluate(context, [small], FREE).feasible.tolist() == [False]
    override = FREE.model_copy(update={"min_trade_value": 50.0})
    assert DOMAIN.evaluate(context, [small], override).feasible.tolist() == [True]


def test_an_unpriced_security_uses_the_action_price_and_needs_a_rate() -> None:
    raw = small_context().model_dump(mode="json")
    raw["securities"].append({"symbol": "D", "currency": "USD"})
    context = parse_context(raw)
    simulation = DOMAIN.simulate(context, (buy("D", 2, price=100.0),), FREE)
    assert simulation.feasible
    assert simulation.cash_after == pytest.approx(1000 - 100 - 2)  # 2 x 100 USD x 0.5
    priceless = DOMAIN.simulate(context, (buy("D", 2, price=0.0),), FREE)
    assert "no price" in priceless.reason
    foreign = Action("buy", "D", 1, 100.0, 0.0, 0.5, "t", currency="SEK")
    assert "no FX rate" in DOMAIN.simulate(context, (foreign,), FREE).reason


# ----------------------------------------------------------------------- agreement


def test_simulate_and_evaluate_agree_exactly() -> None:
    context = small_context(
        targets={"by_country": {"DE": 0.5, "US": 0.3}, "by_industry": {"Tech": 0.6}}
    )
    sequences = [(), (sell("A", 3),), (sell("A", 5), buy("C", 20)), (buy("B", 2), buy("C", 4))]
    evaluation = DOMAIN.evaluate(context, sequences, FREE)
    for index, sequence in enumerate(sequences):
        simulation = DOMAIN.simulate(context, sequence, FREE)
        assert simulation.end_state_score == evaluation.scores[index]
        assert simulation.current_score == evaluation.scores[0]


def test_chunking_gives_identical_results() -> None:
    context = small_context(targets={"by_country": {"DE": 0.5}, "by_security": {"C": 0.1}})
    steps = [sell("A", 2), sell("B", 1), buy("C", 6), buy("B", 1), sell("A", 8), buy("C", 30)]
    sequences = [
        tuple(steps[j] for j in range(len(steps)) if (i >> j) & 1) for i in range(1 << len(steps))
    ]
    whole = DOMAIN.evaluate(
        context, sequences, FREE.model_copy(update={"evaluation_chunk_size": 10_000})
    )
    for size in (1, 3, 7):
        part = DOMAIN.evaluate(
            context, sequences, FREE.model_copy(update={"evaluation_chunk_size": size})
        )
        assert np.array_equal(part.scores, whole.scores)
        assert np.array_equal(part.feasible, whole.feasible)
        assert np.array_equal(part.costs, whole.costs)


def test_equal_but_distinct_action_objects_score_the_same() -> None:
    context = small_context()
    first = DOMAIN.evaluate(context, [(sell("A", 2), buy("C", 6))], FREE).scores
    again = DOMAIN.evaluate(context, [(sell("A", 2), buy("C", 6))], FREE).scores
    assert first.tolist() == again.tolist()


def test_many_securities_use_the_exact_repeat_check() -> None:
    securities = [{"symbol": f"S{i}", "price": 10.0} for i in range(130)]
    context = parse_context({"cash": 10_000.0, "securities": securities})
    a, b, c = buy("S1", 1), buy("S65", 1), buy("S1", 2)  # S1 and S65 share a mask bit
    evaluation = DOMAIN.evaluate(context, [(a, b), (a, c), (b,)], FREE)
    assert evaluation.feasible.tolist() == [True, False, True]


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PortfolioSettings.model_validate({"cost_penalty": 1.0})
    with pytest.raises(ValidationError, match="cannot all be 0"):
        PortfolioSettings(allocation_weight=0, diversification_weight=0, quality_weight=0)
    with pytest.raises(ValidationError):
        PortfolioSettings(max_loss=0.5)
    assert PortfolioSettings().cost_penalty_factor == 1.0


# ----------------------------------------------------------------------- properties


@st.composite
def contexts_and_sequences(draw: st.DrawFn) -> tuple[PortfolioContext, list[ActionSequence]]:
    count = draw(st.integers(min_value=1, max_value=4))
    currencies = ("EUR", "USD", "GBP")
    securities, positions = [], []
    for i in range(count):
        currency = draw(st.sampled_from(currencies))
        price = draw(st.floats(min_value=5, max_value=200))
        securities.append(
            {
                "symbol": f"S{i}",
                "country": draw(st.sampled_from(("DE", "US", "FR"))),
                "industry": draw(st.sampled_from(("Tech", "Health"))),
                "currency": currency,
                "price": price,
                "scores": {"quality": draw(st.floats(min_value=0, max_value=1))},
            }
        )
        if draw(st.booleans()):
            positions.append(
                {
                    "symbol": f"S{i}",
                    "quantity": float(draw(st.integers(min_value=1, max_value=50))),
                    "average_price": price,
                    "current_price": price,
                    "currency": currency,
                }
            )
    targets: dict[str, Any] = {}
    if draw(st.booleans()):
        targets["by_country"] = {"DE": 0.3, "US": draw(st.floats(min_value=0, max_value=0.6))}
    if draw(st.booleans()):
        targets["by_industry"] = {"Tech": draw(st.floats(min_value=0, max_value=1))}
    if draw(st.booleans()):
        targets["by_security"] = {"S0": 0.2}
    context = parse_context(
        {
            "cash": draw(st.floats(min_value=0, max_value=3000)),
            "fx_rates": {"USD": 0.9, "GBP": 1.2},
            "securities": securities,
            "positions": positions,
            "targets": targets,
            "costs": {
                "fixed": draw(st.sampled_from((0.0, 1.0, 5.0))),
                "percent": draw(st.sampled_from((0.0, 0.001, 0.01))),
            },
        }
    )
    action = st.builds(
        Action,
        side=st.sampled_from(("sell", "buy")),
        key=st.sampled_from([s["symbol"] for s in securities]),
        quantity=st.integers(min_value=1, max_value=60).map(float),
        price=st.just(1.0),
        value=st.just(0.0),
        priority=st.just(0.5),
        category=st.just("p"),
    )
    sequences = draw(st.lists(st.lists(action, max_size=4).map(tuple), min_size=1, max_size=12))
    return context, sequences


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts_and_sequences())
def test_evaluate_matches_a_plain_python_evaluation(
    case: tuple[PortfolioContext, list[ActionSequence]],
) -> None:
    context, sequences = case
    evaluation = DOMAIN.evaluate(context, sequences, FREE)
    for index, sequence in enumerate(sequences):
        score, feasible, _ = reference(context, sequence, FREE)
        assert bool(evaluation.feasible[index]) == feasible, sequence
        if feasible:
            assert evaluation.scores[index] == pytest.approx(score, rel=1e-9, abs=1e-9)
        else:
            assert evaluation.scores[index] == -math.inf


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts_and_sequences())
def test_a_feasible_sequence_never_spends_cash_it_does_not_have(
    case: tuple[PortfolioContext, list[ActionSequence]],
) -> None:
    context, sequences = case
    evaluation = DOMAIN.evaluate(context, sequences, FREE)
    for index, sequence in enumerate(sequences):
        simulation = DOMAIN.simulate(context, sequence, FREE)
        assert simulation.feasible == bool(evaluation.feasible[index])
        assert simulation.end_state_score == evaluation.scores[index]
        if simulation.feasible:
            assert len(simulation.executed) == len(sequence)
            assert all(trade.cash_after >= 0 for trade in simulation.trades)
            _, _, path = reference(context, sequence, FREE)
            assert all(cash >= 0 for cash in path)
        else:
            assert simulation.reason


def test_reference_agrees_on_the_known_case() -> None:
    context = small_context()
    score, feasible, path = reference(context, (buy("B", 4),), FREE)
    assert feasible
    assert path == [595.0]
    assert score == pytest.approx(score_of(context, buy("B", 4)), abs=1e-12)


def test_days_are_counted_from_the_context_date() -> None:
    recent = {"recent_sells": {"A": "2025-03-01"}}
    context = small_context(as_of=date(2025, 8, 1).isoformat(), restrictions=recent)  # 153 days
    assert action_problem(model_for(context), PortfolioSettings(), sell("A", 1)) is not None
    later = small_context(as_of="2025-09-28", restrictions=recent)
    assert action_problem(model_for(later), PortfolioSettings(), sell("A", 1)) is None
