"""The built-in pattern generators on hand-made candidates with known answers."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from planforge.holistic.modules import Action, ActionSequence, PatternGenerator
from planforge.portfolio import patterns
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.patterns import (
    AdaptivePattern,
    CashGenerationPattern,
    CostOptimizedPattern,
    DeepRebalancePattern,
    DirectBuyPattern,
    MixedStrategyPattern,
    MultiSellPattern,
    OpportunityFirstPattern,
    SingleBestPattern,
)
from tests.portfolio.test_calculators import literal_metadata

ALL = (
    DirectBuyPattern,
    SingleBestPattern,
    MultiSellPattern,
    MixedStrategyPattern,
    OpportunityFirstPattern,
    DeepRebalancePattern,
    CashGenerationPattern,
    CostOptimizedPattern,
    AdaptivePattern,
)


def act(side: str, key: str, value: float, priority: float, category: str = "test") -> Action:
    return Action(
        side=side,
        key=key,
        quantity=value / 10.0,
        price=10.0,
        value=value,
        priority=priority,
        category=category,
    )


def context(cash: float = 0.0, held: float = 0.0, **extra: Any) -> PortfolioContext:
    """A context with `cash` and one EUR position worth `held`."""
    raw: dict[str, Any] = {"as_of": "2024-06-01", "cash": cash, **extra}
    raw["securities"] = [{"symbol": "HELD"}]
    if held:
        raw["positions"] = [
            {"symbol": "HELD", "quantity": held / 10, "average_price": 10, "current_price": 10}
        ]
    return parse_context(raw)


def keys(sequence: ActionSequence) -> list[str]:
    return [a.key for a in sequence]


def group(*actions: Action) -> dict[str, list[Action]]:
    grouped: dict[str, list[Action]] = {}
    for action in actions:
        grouped.setdefault(action.category, []).append(action)
    return grouped


BUYS = (
    act("buy", "W", 200, 1.0),
    act("buy", "X", 80, 0.9),
    act("buy", "Y", 50, 0.8),
    act("buy", "Z", 20, 0.5),
)


def test_direct_buy_spends_only_the_cash_there_is() -> None:
    out = DirectBuyPattern().generate(context(cash=100), group(*BUYS), None)
    assert [keys(s) for s in out] == [["X", "Z"], ["X"], ["Y"], ["Z"]]
    assert all(a.side == "buy" for s in out for a in s)
    assert (
        len(DirectBuyPattern().generate(context(cash=100), group(*BUYS), {"max_sequences": 2})) == 2
    )


def test_direct_buy_includes_costs_in_what_cash_must_cover() -> None:
    ctx = context(cash=100, costs={"fixed": 25.0})
    out = DirectBuyPattern().generate(ctx, group(*BUYS), None)
    # X costs 105 with fees; Y 75, then Z 45 would exceed the 25 left
    assert [keys(s) for s in out] == [["Y"], ["Z"]]


def test_single_best_takes_the_top_action_but_a_buy_only_if_cash_covers_it() -> None:
    ctx = context(cash=100)
    assert [keys(s) for s in SingleBestPattern().generate(ctx, group(*BUYS), None)] == [["X"]]
    costly = context(cash=100, costs={"fixed": 30.0})
    assert [keys(s) for s in SingleBestPattern().generate(costly, group(*BUYS), None)] == [["Y"]]
    sell = act("sell", "S", 5000, 0.95, "rebalance_sells")
    out = SingleBestPattern().generate(context(cash=0), group(sell, *BUYS), None)
    assert out == [(sell,)]  # a sell needs no cash
    assert SingleBestPattern().generate(context(cash=10), group(*BUYS[:3]), None) == []
    assert SingleBestPattern().generate(ctx, {}, None) == []


def test_single_best_looks_across_categories() -> None:
    a = act("buy", "A", 10, 0.4, "opportunity_buys")
    b = act("sell", "B", 10, 0.7, "profit_taking")
    c = act("buy", "C", 10, 0.6, "rebalance_buys")
    assert SingleBestPattern().generate(context(cash=50), group(a, b, c), None) == [(b,)]


SELLS = (
    act("sell", "S1", 100, 0.9, "profit_taking"),
    act("sell", "S2", 50, 0.7, "rebalance_sells"),
    act("sell", "S3", 60, 0.5, "rebalance_sells"),
    act("sell", "S4", 60, 0.2, "weight_based"),
)


def test_multi_sell_offers_growing_prefixes_of_the_best_sells() -> None:
    out = MultiSellPattern().generate(context(), group(*SELLS, *BUYS), None)
    assert [keys(s) for s in out] == [["S1"], ["S1", "S2"], ["S1", "S2", "S3"]]
    only_rebalance = MultiSellPattern().generate(
        context(), group(*SELLS), {"categories": ["rebalance_sells"], "max_sells": 5}
    )
    assert [keys(s) for s in only_rebalance] == [["S2"], ["S2", "S3"]]


def test_mixed_strategy_reinvests_sell_proceeds_sells_first() -> None:
    sells = (act("sell", "S1", 100, 0.9), act("sell", "S2", 50, 0.7))
    buys = (act("buy", "B1", 140, 0.8), act("buy", "B2", 30, 0.6))
    out = MixedStrategyPattern().generate(context(cash=0), group(*sells, *buys), None)
    assert [keys(s) for s in out] == [["S1", "B2"], ["S1", "S2", "B1"]]


def test_mixed_strategy_leaves_out_sequences_without_an_affordable_buy() -> None:
    sells = (act("sell", "S1", 10, 0.9),)
    buys = (act("buy", "B1", 500, 0.8),)
    assert MixedStrategyPattern().generate(context(cash=0), group(*sells, *buys), None) == []


def test_opportunity_first_sells_just_enough_to_fund_the_opportunity() -> None:
    opp = act("buy", "O1", 100, 0.9, "opportunity_buys")
    other = act("buy", "R1", 10, 0.99, "rebalance_buys")
    sells = (
        act("sell", "S1", 30, 0.9),
        act("sell", "S2", 40, 0.5),
        act("sell", "S3", 100, 0.3),
    )
    (only,) = OpportunityFirstPattern().generate(context(cash=50), group(opp, other, *sells), None)
    assert keys(only) == ["S1", "S2", "O1"]
    (rich,) = OpportunityFirstPattern().generate(context(cash=500), group(opp, *sells), None)
    assert keys(rich) == ["O1"]
    assert OpportunityFirstPattern().generate(context(cash=500), group(*sells), None) == []


def test_deep_rebalance_uses_rebalancing_categories_within_max_steps() -> None:
    candidates = group(
        *SELLS,
        act("buy", "RB1", 100, 0.8, "rebalance_buys"),
        act("buy", "WB1", 40, 0.7, "weight_based"),
        act("buy", "OB1", 10, 0.99, "opportunity_buys"),
    )
    (full,) = DeepRebalancePattern().generate(context(cash=0), candidates, None)
    assert keys(full) == ["S2", "S3", "S4", "RB1", "WB1"]
    (short,) = DeepRebalancePattern().generate(context(cash=0), candidates, {"max_steps": 2})
    assert keys(short) == ["S2", "S3"]


def test_cash_generation_sells_until_the_cash_target_is_met() -> None:
    sells = (act("sell", "A", 60, 0.9), act("sell", "B", 60, 0.8), act("sell", "C", 60, 0.7))
    # total value 1000, target 10% = 100: two sells of 60 reach it
    (out,) = CashGenerationPattern().generate(context(cash=0, held=1000), group(*sells), None)
    assert keys(out) == ["A", "B"]
    assert CashGenerationPattern().generate(context(cash=200, held=800), group(*sells), None) == []
    (capped,) = CashGenerationPattern().generate(
        context(cash=0, held=1000), group(*sells), {"target_cash_fraction": 0.5, "max_sells": 2}
    )
    assert keys(capped) == ["A", "B"]


def test_cost_optimized_prefers_priority_per_cost_and_waits_for_funding() -> None:
    ctx = context(cash=0, costs={"percent": 0.01})
    big = act("sell", "A", 1000, 0.9)  # 0.9 / 10
    small = act("sell", "B", 100, 0.5)  # 0.5 / 1
    buy = act("buy", "C", 50, 0.4)  # 0.4 / 0.5, but needs B's proceeds first
    out = CostOptimizedPattern().generate(ctx, group(big, small, buy), None)
    assert [keys(s) for s in out] == [["B"], ["B", "C"], ["B", "A", "C"]]
    assert len(CostOptimizedPattern().generate(ctx, group(big, small, buy), {"max_steps": 1})) == 1


@pytest.mark.parametrize(
    ("cash", "held", "shape", "expected"),
    [
        (10, 990, (3, 1), ["S1", "S2", "S3", "B1"]),  # 1% cash: raise money
        (100, 900, (2, 2), ["S1", "S2", "B1", "B2"]),  # 10%: balanced
        (500, 500, (0, 4), ["B1", "B2", "B3", "B4"]),  # 50%: put cash to work
    ],
)
def test_adaptive_picks_its_shape_from_the_cash_share(
    cash: float, held: float, shape: tuple[int, int], expected: list[str]
) -> None:
    ctx = context(cash=cash, held=held)
    params = AdaptivePattern.Params()
    assert AdaptivePattern.shape(ctx, params) == shape
    sells = [act("sell", f"S{i}", 100, 0.9 - i / 100) for i in range(1, 5)]
    buys = [act("buy", f"B{i}", 10, 0.8 - i / 100) for i in range(1, 6)]
    (out,) = AdaptivePattern().generate(ctx, group(*sells, *buys), None)
    assert keys(out) == expected


def test_adaptive_params_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="low_cash_fraction"):
        AdaptivePattern.parse_params({"low_cash_fraction": 0.5, "high_cash_fraction": 0.1})


def random_candidates(rng: random.Random) -> dict[str, list[Action]]:
    categories = ("profit_taking", "rebalance_sells", "rebalance_buys", "opportunity_buys")
    actions = []
    for _ in range(rng.randint(0, 14)):
        side = rng.choice(("buy", "sell"))
        category = rng.choice(categories)
        actions.append(
            act(side, rng.choice("ABCDEFGH"), rng.uniform(5, 400), rng.random(), category)
        )
    return group(*actions)


@pytest.mark.parametrize("pattern", ALL, ids=lambda p: p.name)
def test_every_pattern_sells_first_once_per_symbol_payable_and_bounded(
    pattern: type[PatternGenerator],
) -> None:
    rng = random.Random(pattern.name)
    for _ in range(60):
        ctx = context(cash=rng.choice((0, 50, 300)), held=1000, costs={"fixed": 1, "percent": 0.01})
        candidates = random_candidates(rng)
        out = pattern().generate(ctx, candidates, None)
        assert out == pattern().generate(ctx, candidates, None)  # deterministic
        assert len(out) <= 10
        count = sum(len(actions) for actions in candidates.values())
        bound = pattern.estimate_output(  # type: ignore[attr-defined]
            pattern.Params(), candidates=count, max_depth=5
        )
        assert len(out) <= bound
        assert len(set(out)) == len(out)
        given = {a for actions in candidates.values() for a in actions}
        for sequence in out:
            assert sequence
            assert set(sequence) <= given  # patterns never invent actions
            sides = [a.side for a in sequence]
            assert sides == sorted(sides, key=lambda s: s != "sell")
            assert len({a.key for a in sequence}) == len(sequence)
            cash = ctx.cash
            for action in sequence:
                fee = 1 + 0.01 * action.value
                cash += action.value - fee if action.side == "sell" else -(action.value + fee)
                if action.side == "buy":
                    assert cash >= -1e-6, f"{pattern.name} lists a buy cash cannot cover"


@pytest.mark.parametrize("pattern", ALL, ids=lambda p: p.name)
def test_every_pattern_handles_no_candidates(pattern: type[PatternGenerator]) -> None:
    assert pattern().generate(context(cash=100, held=100), {}, None) == []


@pytest.mark.parametrize("pattern", ALL, ids=lambda p: p.name)
def test_params_are_strict_and_documented(pattern: type[PatternGenerator]) -> None:
    with pytest.raises(ValidationError, match="bogus"):
        pattern.parse_params({"bogus": True})
    for name, field in pattern.Params.model_fields.items():
        assert field.description, f"{pattern.name}.{name} has no description"
        assert not field.is_required()


def test_metadata_is_literal_and_complete() -> None:
    found = literal_metadata(patterns)
    for pattern in ALL:
        attrs = found[pattern.__name__]
        assert attrs["name"] == pattern.name
        assert attrs["version"] == "1.0.0"
        assert attrs["author"] == "planforge"
        assert attrs["description"]
        assert attrs["tags"]
        assert attrs["dependencies"] == ()
        assert pattern.kind == "pattern_generators"
        assert pattern.__doc__
        assert len(pattern.__doc__) > 80
    assert len({p.name for p in ALL}) == len(ALL)
