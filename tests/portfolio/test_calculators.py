"""The built-in opportunity calculators on small hand-made portfolios with known answers."""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from planforge.holistic.modules import Action, OpportunityCalculator
from planforge.portfolio import calculators
from planforge.portfolio.calculators import (
    AveragingDownCalculator,
    OpportunityBuysCalculator,
    ProfitTakingCalculator,
    RebalanceBuysCalculator,
    RebalanceSellsCalculator,
    WeightBasedCalculator,
)
from planforge.portfolio.context import PortfolioContext, parse_context

ALL = (
    ProfitTakingCalculator,
    AveragingDownCalculator,
    OpportunityBuysCalculator,
    RebalanceSellsCalculator,
    RebalanceBuysCalculator,
    WeightBasedCalculator,
)


def security(symbol: str, **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "name": f"{symbol} Corp", **extra}


def position(
    symbol: str, quantity: float, average: float, current: float, **extra: Any
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "quantity": quantity,
        "average_price": average,
        "current_price": current,
        **extra,
    }


def context(**raw: Any) -> PortfolioContext:
    raw.setdefault("as_of", "2024-06-01")
    return parse_context(raw)


def by_key(actions: list[Action]) -> dict[str, Action]:
    return {a.key: a for a in actions}


# ---------------------------------------------------------------- profit taking


def test_profit_taking_sells_a_fraction_of_a_windfall_valued_in_base_currency() -> None:
    ctx = context(
        fx_rates={"USD": 0.9},
        securities=[security("WIN", currency="USD"), security("MEH")],
        positions=[
            position("WIN", 100, 10.0, 20.0, currency="USD"),  # +100%
            position("MEH", 100, 10.0, 12.0),  # +20%: no windfall
        ],
    )
    actions = ProfitTakingCalculator().calculate(ctx, None)
    assert len(actions) == 1
    sell = actions[0]
    assert (sell.side, sell.key, sell.category) == ("sell", "WIN", "profit_taking")
    assert sell.quantity == 30
    assert sell.price == 20.0
    assert sell.currency == "USD"
    assert sell.value == pytest.approx(30 * 20.0 * 0.9)
    assert sell.priority == pytest.approx(1.0 / 1.5)
    assert "windfall" in sell.tags
    assert "100.0%" in sell.reason


def test_profit_taking_priority_grows_with_the_windfall() -> None:
    ctx = context(
        securities=[security("A"), security("B"), security("C")],
        positions=[
            position("A", 10, 10.0, 16.0),
            position("B", 10, 10.0, 30.0),
            position("C", 10, 10.0, 20.0),
        ],
    )
    actions = ProfitTakingCalculator().calculate(ctx, {"sell_fraction": 0.5})
    assert [a.key for a in actions] == ["B", "C", "A"]
    priorities = [a.priority for a in actions]
    assert priorities == sorted(priorities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in priorities)


def test_profit_taking_rounds_down_to_whole_lots() -> None:
    ctx = context(
        securities=[security("LOT", lot_size=25)],
        positions=[position("LOT", 100, 10.0, 20.0)],
    )
    (sell,) = ProfitTakingCalculator().calculate(ctx, None)
    assert sell.quantity == 25  # 30% of 100 is 30, one lot of 25
    assert sell.value == pytest.approx(500.0)


def test_profit_taking_skips_trades_below_the_minimum_value_or_a_lot() -> None:
    ctx = context(
        min_trade_value=100.0,
        securities=[security("SMALL"), security("BIGLOT", lot_size=50)],
        positions=[position("SMALL", 10, 10.0, 20.0), position("BIGLOT", 100, 1.0, 2.0)],
    )
    # SMALL: 3 units x 20 = 60 < 100; BIGLOT: 30 units round down to 0 lots of 50
    assert ProfitTakingCalculator().calculate(ctx, None) == []


def test_profit_taking_respects_ineligible_symbols_and_allow_sell() -> None:
    raw: dict[str, Any] = {
        "securities": [security("A"), security("B")],
        "positions": [position("A", 10, 10.0, 20.0), position("B", 10, 10.0, 20.0)],
    }
    ctx = context(**raw, restrictions={"ineligible": ["A"]})
    assert [a.key for a in ProfitTakingCalculator().calculate(ctx, None)] == ["B"]
    blocked = context(**raw, restrictions={"allow_sell": False})
    assert ProfitTakingCalculator().calculate(blocked, None) == []


def test_profit_taking_threshold_is_configurable() -> None:
    ctx = context(securities=[security("A")], positions=[position("A", 10, 10.0, 13.0)])
    assert ProfitTakingCalculator().calculate(ctx, None) == []
    (sell,) = ProfitTakingCalculator().calculate(ctx, {"windfall_threshold": 0.3})
    assert sell.priority == pytest.approx(0.5)


def test_profit_taking_sells_the_whole_position_when_asked_even_if_fractional() -> None:
    ctx = context(securities=[security("F")], positions=[position("F", 7.5, 10.0, 30.0)])
    (sell,) = ProfitTakingCalculator().calculate(ctx, {"sell_fraction": 1.0})
    assert sell.quantity == 7.5


# ---------------------------------------------------------------- averaging down


def test_averaging_down_buys_quality_dips_only() -> None:
    ctx = context(
        securities=[
            security("DIP", scores={"quality": 0.8}),
            security("SHALLOW", scores={"quality": 0.9}),
            security("JUNK", scores={"quality": 0.3}),
        ],
        positions=[
            position("DIP", 100, 10.0, 7.5),  # -25%, good quality
            position("SHALLOW", 100, 10.0, 9.0),  # -10%: not a dip
            position("JUNK", 100, 10.0, 5.0),  # -50% but poor quality
        ],
    )
    (buy,) = AveragingDownCalculator().calculate(ctx, None)
    assert (buy.side, buy.key, buy.category) == ("buy", "DIP", "averaging_down")
    # a quarter of the 750 position value, at 7.5 a share: 25 shares
    assert buy.quantity == 25
    assert buy.value == pytest.approx(187.5)
    assert buy.priority == pytest.approx(0.5 * 0.8 + 0.5 * (0.25 / 0.4))


def test_averaging_down_threshold_boundary_and_allow_buy() -> None:
    raw: dict[str, Any] = {
        "securities": [security("EDGE", scores={"q": 0.7})],
        "positions": [position("EDGE", 100, 10.0, 8.0)],  # exactly -20%
    }
    assert [a.key for a in AveragingDownCalculator().calculate(context(**raw), None)] == ["EDGE"]
    assert AveragingDownCalculator().calculate(context(**raw), {"dip_threshold": -0.3}) == []
    blocked = context(**raw, restrictions={"allow_buy": False})
    assert AveragingDownCalculator().calculate(blocked, None) == []


# ---------------------------------------------------------------- opportunity buys


def test_opportunity_buys_unheld_quality_with_a_price() -> None:
    ctx = context(
        cash=1000.0,
        fx_rates={"GBP": 1.2},
        securities=[
            security("HELD", scores={"q": 0.95}),
            security("NEW", scores={"q": 0.9}, price=10.0),
            security("UK", scores={"q": 0.8}, price=5.0, currency="GBP"),
            security("NOPRICE", scores={"q": 0.99}),
            security("LOW", scores={"q": 0.5}, price=10.0),
        ],
        positions=[position("HELD", 100, 10.0, 10.0)],
    )
    actions = OpportunityBuysCalculator().calculate(ctx, None)
    assert [a.key for a in actions] == ["NEW", "UK"]  # best quality first
    new, uk = actions
    # 5% of 2000 = 100 EUR
    assert new.quantity == 10
    assert new.priority == pytest.approx(0.9)
    assert uk.quantity == 16  # 100 EUR / (5 GBP x 1.2) = 16.67 -> 16
    assert uk.value == pytest.approx(16 * 5.0 * 1.2)
    assert all(a.category == "opportunity_buys" for a in actions)


def test_opportunity_buys_tops_up_an_underweight_target_but_not_past_it() -> None:
    ctx = context(
        cash=900.0,
        securities=[security("UNDER", scores={"q": 0.9})],
        positions=[position("UNDER", 10, 10.0, 10.0)],  # 100 of 1000 = 10%
        targets={"by_security": {"UNDER": 0.13}},
    )
    (buy,) = OpportunityBuysCalculator().calculate(ctx, {"trade_fraction": 0.5})
    assert buy.quantity == 3  # capped at the 3% gap = 30 EUR
    at_target = context(
        cash=900.0,
        securities=[security("UNDER", scores={"q": 0.9})],
        positions=[position("UNDER", 10, 10.0, 10.0)],
        targets={"by_security": {"UNDER": 0.11}},  # inside the tolerance
    )
    assert OpportunityBuysCalculator().calculate(at_target, None) == []


# ---------------------------------------------------------------- rebalance sells

REBALANCE: dict[str, Any] = {
    "securities": [
        security("A", country="US", industry="tech"),
        security("B", country="DE", industry="tech"),
    ],
    "positions": [position("A", 60, 10.0, 10.0), position("B", 40, 10.0, 10.0)],
}


def test_rebalance_sells_sell_down_to_the_security_target() -> None:
    ctx = context(**REBALANCE, targets={"by_security": {"A": 0.4, "B": 0.6}})
    (sell,) = RebalanceSellsCalculator().calculate(ctx, None)
    assert (sell.side, sell.key, sell.quantity) == ("sell", "A", 20)
    assert sell.value == pytest.approx(200.0)
    assert sell.priority == pytest.approx(0.2 / 0.25)
    assert sell.category == "rebalance_sells"


def test_rebalance_sells_share_a_group_excess_by_position_value() -> None:
    ctx = context(**REBALANCE, targets={"by_industry": {"tech": 0.8}})
    actions = by_key(RebalanceSellsCalculator().calculate(ctx, None))
    assert actions["A"].quantity == 12  # 20% excess x 1000 x 60% share
    assert actions["B"].quantity == 8
    assert "industry tech" in actions["A"].reason


def test_rebalance_sells_propose_each_overlapping_excess_not_the_sum() -> None:
    ctx = context(**REBALANCE, targets={"by_security": {"A": 0.4}, "by_country": {"US": 0.5}})
    sells = RebalanceSellsCalculator().calculate(ctx, None)
    assert sorted(a.quantity for a in sells) == [10, 20]  # 100 for the country, 200 for A
    country_only = RebalanceSellsCalculator().calculate(ctx, {"by_security": False})
    assert [(a.key, a.quantity) for a in country_only] == [("A", 10)]


def test_rebalance_sells_ignore_gaps_within_tolerance_and_respect_allow_sell() -> None:
    ctx = context(**REBALANCE, targets={"by_security": {"A": 0.59}})
    assert RebalanceSellsCalculator().calculate(ctx, None) == []
    blocked = context(
        **REBALANCE, targets={"by_security": {"A": 0.4}}, restrictions={"allow_sell": False}
    )
    assert RebalanceSellsCalculator().calculate(blocked, None) == []


# ---------------------------------------------------------------- rebalance buys


def rebalance_buys_context(**extra: Any) -> PortfolioContext:
    return context(
        cash=500.0,
        securities=[
            security("A", country="US", industry="tech", scores={"q": 0.5}),
            security("C", country="US", industry="health", scores={"q": 0.9}, price=20.0),
            security("D", country="US", industry="health", scores={"q": 0.6}, price=10.0),
            security("E", country="DE", industry="energy"),  # no price anywhere
        ],
        positions=[position("A", 50, 10.0, 10.0)],
        **extra,
    )


def test_rebalance_buys_buy_toward_targets_priced_from_security_or_position() -> None:
    ctx = rebalance_buys_context(
        targets={"by_security": {"A": 0.6, "E": 0.1}, "by_industry": {"health": 0.3}}
    )
    actions = by_key(RebalanceBuysCalculator().calculate(ctx, None))
    assert sorted(actions) == ["A", "C"]  # E has no price: it cannot be bought
    assert actions["A"].quantity == 10  # 10% gap of 1000 at the position's price 10
    assert actions["A"].price == 10.0
    # the health gap goes to its best-quality security, C, at 20 a share
    assert actions["C"].quantity == 15
    assert actions["C"].priority == pytest.approx(0.8 * 0.3 / 0.35 + 0.2 * 0.9)
    assert all(a.side == "buy" and a.category == "rebalance_buys" for a in actions.values())


def test_rebalance_buys_skip_ineligible_and_lots_and_allow_buy() -> None:
    ctx = rebalance_buys_context(
        targets={"by_industry": {"health": 0.3}}, restrictions={"ineligible": ["C"]}
    )
    (buy,) = RebalanceBuysCalculator().calculate(ctx, None)
    assert (buy.key, buy.quantity) == ("D", 30)
    blocked = rebalance_buys_context(
        targets={"by_industry": {"health": 0.3}}, restrictions={"allow_buy": False}
    )
    assert RebalanceBuysCalculator().calculate(blocked, None) == []


# ---------------------------------------------------------------- weight based


def test_weight_based_moves_the_largest_deviations_on_both_sides() -> None:
    ctx = context(
        cash=0.0,
        securities=[
            security("OVER"),
            security("UNDER", price=10.0),
            security("SLIGHT"),
            security("NEW", price=5.0),
        ],
        positions=[
            position("OVER", 50, 10.0, 10.0),  # 50% vs 20%
            position("UNDER", 10, 10.0, 10.0),  # 10% vs 30%
            position("SLIGHT", 40, 10.0, 10.0),  # 40% vs 35%
        ],
        targets={"by_security": {"OVER": 0.2, "UNDER": 0.3, "SLIGHT": 0.35, "NEW": 0.15}},
    )
    actions = WeightBasedCalculator().calculate(ctx, None)
    assert [(a.side, a.key) for a in actions] == [
        ("sell", "OVER"),
        ("buy", "UNDER"),
        ("buy", "NEW"),
        ("sell", "SLIGHT"),
    ]
    assert by_key(actions)["OVER"].quantity == 30
    assert by_key(actions)["NEW"].quantity == 30
    top_two = WeightBasedCalculator().calculate(ctx, {"max_actions": 2})
    assert [a.key for a in top_two] == ["OVER", "UNDER"]


# ---------------------------------------------------------------- every calculator


def busy_context() -> PortfolioContext:
    """Something for every calculator to do."""
    return context(
        cash=2000.0,
        fx_rates={"USD": 0.9},
        min_trade_value=20.0,
        securities=[
            security("WIN", country="US", industry="tech", currency="USD", lot_size=5),
            security("DIP", country="DE", industry="auto", scores={"q": 0.8}),
            security("BIG", country="DE", industry="bank", scores={"q": 0.6}),
            security("NEW", country="FR", industry="food", scores={"q": 0.9}, price=30.0),
            security("NEW2", country="FR", industry="tech", scores={"q": 0.75}, price=7.0),
        ],
        positions=[
            position("WIN", 40, 50.0, 120.0, currency="USD"),
            position("DIP", 100, 20.0, 12.0),
            position("BIG", 300, 10.0, 11.0),
        ],
        targets={
            "by_security": {"BIG": 0.2, "NEW": 0.1},
            "by_country": {"FR": 0.2},
            "by_industry": {"tech": 0.3},
        },
    )


@pytest.mark.parametrize("calculator", ALL, ids=lambda c: c.name)
def test_every_calculator_returns_sound_lot_sized_candidates(
    calculator: type[OpportunityCalculator],
) -> None:
    ctx = busy_context()
    actions = calculator().calculate(ctx, None)
    assert actions, f"{calculator.name} proposed nothing on the busy context"
    assert len(actions) <= 5
    held = {p.symbol: p.quantity for p in ctx.positions}
    for action in actions:
        assert action.category == calculator.name
        assert 0.0 <= action.priority <= 1.0
        assert action.reason
        assert action.value >= ctx.min_trade_value
        assert action.value == pytest.approx(
            action.quantity * action.price * ctx.fx(action.currency)
        )
        lot = ctx.security(action.key).lot_size
        whole_position = action.side == "sell" and action.quantity == held.get(action.key)
        assert whole_position or math.isclose(action.quantity % lot, 0.0, abs_tol=1e-9)
        if action.side == "sell":
            assert action.quantity <= held[action.key]
    # distinct trades first, best first; a second size of a trade only after all of them
    firsts = list(dict.fromkeys(a.identity() for a in actions))
    assert [a.identity() for a in actions[: len(firsts)]] == firsts
    ordering = [(-a.priority, a.side, a.key) for a in actions[: len(firsts)]]
    assert ordering == sorted(ordering)


@pytest.mark.parametrize("calculator", ALL, ids=lambda c: c.name)
def test_every_calculator_honours_ineligible_symbols_and_max_actions(
    calculator: type[OpportunityCalculator],
) -> None:
    busy = busy_context()
    everything = [s.symbol for s in busy.securities]
    ctx = parse_context({**busy.model_dump(), "restrictions": {"ineligible": everything}})
    assert calculator().calculate(ctx, None) == []
    assert len(calculator().calculate(busy, {"max_actions": 1})) == 1


@pytest.mark.parametrize("calculator", ALL, ids=lambda c: c.name)
def test_every_calculator_is_deterministic(calculator: type[OpportunityCalculator]) -> None:
    assert calculator().calculate(busy_context(), None) == calculator().calculate(
        busy_context(), None
    )


@pytest.mark.parametrize("calculator", ALL, ids=lambda c: c.name)
def test_params_reject_unknown_keys_and_out_of_bounds_values(
    calculator: type[OpportunityCalculator],
) -> None:
    with pytest.raises(ValidationError, match="not_a_param"):
        calculator.parse_params({"not_a_param": 1})
    with pytest.raises(ValidationError, match="max_actions"):
        calculator.parse_params({"max_actions": 0})
    for name, field in calculator.Params.model_fields.items():
        assert field.description, f"{calculator.name}.{name} has no description"
        assert not field.is_required()


def literal_metadata(module: Any) -> dict[str, dict[str, Any]]:
    """What discovery sees: the literal class attributes, read with ast, never imported."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            attrs: dict[str, Any] = {}
            for item in node.body:
                if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                    attrs[item.targets[0].id] = ast.literal_eval(item.value)
            found[node.name] = attrs
    return found


def test_metadata_is_literal_and_complete() -> None:
    found = literal_metadata(calculators)
    for calculator in ALL:
        attrs = found[calculator.__name__]
        assert attrs["name"] == calculator.name
        assert attrs["version"] == "1.0.0"
        assert attrs["author"] == "planforge"
        assert attrs["description"]
        assert isinstance(attrs["tags"], tuple)
        assert attrs["tags"]
        assert attrs["dependencies"] == ()
        assert calculator.kind == "opportunity_calculators"
        assert calculator.__doc__
        assert len(calculator.__doc__) > 80
    assert len({c.name for c in ALL}) == len(ALL)
