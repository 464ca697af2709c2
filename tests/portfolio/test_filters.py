"""The built-in filters: dates, losses, correlation proxy, diversity; never adding anything."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from planforge.holistic.modules import Action, ActionSequence, Filter
from planforge.portfolio import filters
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.filters import (
    CorrelationAwareFilter,
    DiversityFilter,
    EligibilityFilter,
    RecentlyTradedFilter,
)
from tests.portfolio.test_calculators import literal_metadata

ALL = (EligibilityFilter, RecentlyTradedFilter, CorrelationAwareFilter, DiversityFilter)


def act(side: str, key: str, price: float = 10.0, priority: float = 0.5) -> Action:
    return Action(
        side=side,
        key=key,
        quantity=1.0,
        price=price,
        value=price,
        priority=priority,
        category="test",
    )


def position(symbol: str, first_bought: str | None, average: float = 10.0) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "quantity": 10,
        "average_price": average,
        "current_price": 10.0,
        "first_bought": first_bought,
    }


def context(**extra: Any) -> PortfolioContext:
    raw: dict[str, Any] = {"as_of": "2024-06-01", **extra}
    symbols = sorted({p["symbol"] for p in raw.get("positions", [])} | set("ABCDEFGH"))
    raw.setdefault("securities", [{"symbol": s} for s in symbols])
    return parse_context(raw)


# ---------------------------------------------------------------- eligibility


def test_eligibility_enforces_the_minimum_hold() -> None:
    ctx = context(
        positions=[
            position("NEW", "2024-05-01"),  # 31 days
            position("EDGE", "2024-03-03"),  # exactly 90 days
            position("OLD", "2024-01-01"),
            position("UNDATED", None),
        ]
    )
    sequences = [(act("sell", s),) for s in ("NEW", "EDGE", "OLD", "UNDATED")]
    kept = EligibilityFilter().apply(ctx, sequences, None)
    assert [s[0].key for s in kept] == ["EDGE", "OLD", "UNDATED"]
    relaxed = EligibilityFilter().apply(ctx, sequences, {"min_hold_days": 30})
    assert len(relaxed) == 4


def test_eligibility_enforces_the_sell_cooldown() -> None:
    ctx = context(
        positions=[position("A", "2020-01-01"), position("B", "2020-01-01")],
        restrictions={"recent_sells": {"A": "2024-03-01", "B": "2023-12-01"}},  # 92 / 183 days
    )
    kept = EligibilityFilter().apply(ctx, [(act("sell", "A"),), (act("sell", "B"),)], None)
    assert [s[0].key for s in kept] == ["B"]


def test_eligibility_refuses_to_realise_a_steep_loss() -> None:
    ctx = context(positions=[position("A", "2020-01-01", average=10.0)])
    steep = (act("sell", "A", price=7.9),)  # -21%
    mild = (act("sell", "A", price=8.1),)  # -19%
    assert EligibilityFilter().apply(ctx, [steep, mild], None) == [mild]
    assert EligibilityFilter().apply(ctx, [steep, mild], {"max_loss": -0.5}) == [steep, mild]


def test_eligibility_leaves_buys_alone_but_drops_ineligible_and_unheld() -> None:
    ctx = context(positions=[position("NEW", "2024-05-30")], restrictions={"ineligible": ["C"]})
    buy_new = (act("buy", "NEW"),)
    sell_unheld = (act("sell", "D"),)
    buy_ineligible = (act("buy", "C"),)
    mixed = (act("sell", "NEW"), act("buy", "A"))
    assert EligibilityFilter().apply(ctx, [buy_new, sell_unheld, buy_ineligible, mixed], None) == [
        buy_new
    ]


# ---------------------------------------------------------------- recently traded


def test_recently_traded_applies_buy_and_sell_cooldowns_separately() -> None:
    ctx = context(
        restrictions={
            "recent_buys": {"A": "2024-05-20", "B": "2024-04-01", "E": "2024-05-02"},
            "recent_sells": {"C": "2024-01-01", "D": "2023-06-01"},
        }
    )
    cases = {
        "buy A (12 days)": ((act("buy", "A"),), False),
        "sell A": ((act("sell", "A"),), True),
        "buy B (61 days)": ((act("buy", "B"),), True),
        "buy E (exactly 30 days)": ((act("buy", "E"),), True),
        "sell C (152 days)": ((act("sell", "C"),), False),
        "buy C": ((act("buy", "C"),), True),
        "sell D (366 days)": ((act("sell", "D"),), True),
        "sell D then buy A": ((act("sell", "D"), act("buy", "A")), False),
    }
    sequences = [sequence for sequence, _ in cases.values()]
    kept = RecentlyTradedFilter().apply(ctx, sequences, None)
    assert kept == [sequence for sequence, ok in cases.values() if ok]
    lenient = RecentlyTradedFilter().apply(
        ctx, sequences, {"buy_cooldown_days": 0, "sell_cooldown_days": 0}
    )
    assert lenient == sequences


# ---------------------------------------------------------------- correlation aware


def correlated_context() -> PortfolioContext:
    return context(
        securities=[
            {"symbol": "US_TECH1", "country": "US", "industry": "tech"},
            {"symbol": "US_TECH2", "country": "US", "industry": "tech"},
            {"symbol": "DE_TECH", "country": "DE", "industry": "tech"},
            {"symbol": "US_BANK", "country": "US", "industry": "bank"},
            {"symbol": "X1"},
            {"symbol": "X2"},
        ]
    )


def test_correlation_proxy_is_the_documented_one() -> None:
    ctx = correlated_context()
    params = CorrelationAwareFilter.Params()

    def proxy(a: str, b: str) -> float:
        return CorrelationAwareFilter.proxy(ctx.security(a), ctx.security(b), params)

    assert proxy("US_TECH1", "US_TECH2") == 1.0
    assert proxy("US_TECH1", "DE_TECH") == 0.8
    assert proxy("US_TECH1", "US_BANK") == 0.5
    assert proxy("DE_TECH", "US_BANK") == 0.0
    assert proxy("X1", "X2") == 0.0  # "unknown" is not a shared classification


def test_correlation_aware_drops_buys_of_two_close_securities() -> None:
    ctx = correlated_context()
    same_both = (act("buy", "US_TECH1"), act("buy", "US_TECH2"))
    same_industry = (act("buy", "US_TECH1"), act("buy", "DE_TECH"))
    same_country = (act("buy", "US_TECH1"), act("buy", "US_BANK"))
    sell_and_buy = (act("sell", "US_TECH1"), act("buy", "US_TECH2"))
    unknowns = (act("buy", "X1"), act("buy", "X2"))
    sequences = [same_both, same_industry, same_country, sell_and_buy, unknowns]
    assert CorrelationAwareFilter().apply(ctx, sequences, None) == [
        same_country,
        sell_and_buy,
        unknowns,
    ]
    strict = CorrelationAwareFilter().apply(ctx, sequences, {"threshold": 0.5})
    assert strict == [sell_and_buy, unknowns]
    loose = CorrelationAwareFilter().apply(ctx, sequences, {"threshold": 0.9})
    assert loose == [same_industry, same_country, sell_and_buy, unknowns]


# ---------------------------------------------------------------- diversity


def test_diversity_drops_near_duplicates_keeping_the_better_one() -> None:
    ctx = context()
    abc = (
        act("sell", "A", priority=0.4),
        act("buy", "B", priority=0.4),
        act("buy", "C", priority=0.4),
    )
    abcd = (*abc, act("buy", "D", priority=0.9))  # overlap 3/4 = 0.75 > 0.7, better mean
    ef = (act("sell", "E"), act("buy", "F"))
    kept = DiversityFilter().apply(ctx, [abc, abcd, ef], {"max_start_share": 1.0})
    assert kept == [abcd, ef]
    everything = DiversityFilter().apply(
        ctx, [abc, abcd, ef], {"diversity_weight": 0.0, "max_start_share": 1.0}
    )
    assert everything == [abc, abcd, ef]


def test_diversity_removes_repeats_even_at_weight_zero() -> None:
    ctx = context()
    ab = (act("sell", "A"), act("buy", "B"))
    assert DiversityFilter().apply(ctx, [ab, ab], {"diversity_weight": 0.0}) == [ab]


def test_diversity_caps_the_share_of_sequences_with_the_same_first_step() -> None:
    ctx = context()
    starts_a = [
        (act("sell", "A"), act("buy", k, priority=0.5 + i / 100)) for i, k in enumerate("BCDEFG")
    ]
    others = [(act("sell", "H"),), (act("buy", "B"),)]
    sequences = [*starts_a, *others]  # 8 sequences, cap 50% = 4 per first step
    kept = DiversityFilter().apply(ctx, sequences, {"diversity_weight": 0.0})
    assert sum(1 for s in kept if s[0].key == "A") == 4
    assert kept[-2:] == others
    # the best four (highest mean priority) survive, in input order
    assert [s[1].key for s in kept if s[0].key == "A"] == ["D", "E", "F", "G"]


# ---------------------------------------------------------------- every filter


def busy_context() -> PortfolioContext:
    return context(
        positions=[position("A", "2024-05-01"), position("B", "2020-01-01", average=20.0)],
        securities=[
            {
                "symbol": s,
                "country": "US" if s in "ABC" else "DE",
                "industry": "tech" if s in "AD" else "bank",
            }
            for s in "ABCDEFGH"
        ],
        restrictions={"recent_buys": {"C": "2024-05-25"}, "recent_sells": {"B": "2024-05-01"}},
    )


def random_sequences(rng: random.Random) -> list[ActionSequence]:
    out: list[ActionSequence] = []
    for _ in range(rng.randint(0, 30)):
        keys = rng.sample("ABCDEFGH", rng.randint(1, 4))
        sells = [act("sell", k, priority=rng.random()) for k in keys[: rng.randint(0, len(keys))]]
        buys = [act("buy", k, priority=rng.random()) for k in keys[len(sells) :]]
        out.append((*sells, *buys))
    return out


@pytest.mark.parametrize("filter_", ALL, ids=lambda f: f.name)
def test_filters_never_add_or_reorder(filter_: type[Filter]) -> None:
    rng = random.Random(filter_.name)
    ctx = busy_context()
    dropped_any = False
    for _ in range(40):
        sequences = random_sequences(rng)
        kept = filter_().apply(ctx, sequences, None)
        assert kept == filter_().apply(ctx, sequences, None)
        # a subsequence: each survivor found in order, none invented
        position_in_input = -1
        for sequence in kept:
            position_in_input = next(
                i for i in range(position_in_input + 1, len(sequences)) if sequences[i] is sequence
            )
        dropped_any = dropped_any or len(kept) < len(sequences)
    assert dropped_any, f"{filter_.name} never dropped anything on the busy context"


@pytest.mark.parametrize("filter_", ALL, ids=lambda f: f.name)
def test_filters_accept_nothing(filter_: type[Filter]) -> None:
    assert filter_().apply(busy_context(), [], None) == []


@pytest.mark.parametrize("filter_", ALL, ids=lambda f: f.name)
def test_params_are_strict_and_documented(filter_: type[Filter]) -> None:
    with pytest.raises(ValidationError, match="bogus"):
        filter_.parse_params({"bogus": 1})
    for name, field in filter_.Params.model_fields.items():
        assert field.description, f"{filter_.name}.{name} has no description"
        assert not field.is_required()


def test_documented_defaults() -> None:
    eligibility = EligibilityFilter.Params()
    assert (eligibility.min_hold_days, eligibility.sell_cooldown_days) == (90, 180)
    assert eligibility.max_loss == -0.20
    recent = RecentlyTradedFilter.Params()
    assert (recent.buy_cooldown_days, recent.sell_cooldown_days) == (30, 180)
    assert CorrelationAwareFilter.Params().threshold == 0.7
    assert DiversityFilter.Params().diversity_weight == 0.3
    with pytest.raises(ValidationError, match="min_hold_days"):
        EligibilityFilter.parse_params({"min_hold_days": -1})


def test_metadata_is_literal_and_complete() -> None:
    found = literal_metadata(filters)
    for filter_ in ALL:
        attrs = found[filter_.__name__]
        assert attrs["name"] == filter_.name
        assert attrs["version"] == "1.0.0"
        assert attrs["author"] == "planforge"
        assert attrs["description"]
        assert attrs["tags"]
        assert attrs["dependencies"] == ()
        assert filter_.kind == "filters"
        assert filter_.__doc__
        assert len(filter_.__doc__) > 80


def test_diversity_drops_only_overlaps_strictly_above_the_limit() -> None:
    ctx = context()
    abc = (act("buy", "A", priority=0.9), act("buy", "B"), act("buy", "C"))
    abd = (act("buy", "A", priority=0.9), act("buy", "B"), act("buy", "D"))  # Jaccard 2/4
    params = {"diversity_weight": 0.5, "max_start_share": 1.0}
    assert DiversityFilter().apply(ctx, [abc, abd], params) == [abc, abd]
    stricter = {"diversity_weight": 0.51, "max_start_share": 1.0}
    assert DiversityFilter().apply(ctx, [abc, abd], stricter) == [abc]


def test_a_filter_that_removed_a_better_plan_says_what_it_would_have_scored() -> None:
    """Two buys in one industry are the best plan here; correlation_aware (off in the default
    preset) removes them, and the plan says so, with both scores. Rule filters, whose removals
    break a trading rule anyway, say nothing."""
    from planforge.portfolio import HolisticPortfolioPlanner
    from planforge.portfolio.planner import preset_text

    raw = {
        "as_of": "2024-06-01",
        "cash": 10_000.0,
        "securities": [
            {"symbol": "A", "country": "US", "industry": "tech", "price": 50.0},
            {"symbol": "B", "country": "DE", "industry": "tech", "price": 40.0},
        ],
        "targets": {"by_industry": {"tech": 0.95}},
    }
    planner = HolisticPortfolioPlanner()
    best = planner.run("Rebalance", raw).plan
    assert sorted(s.params["symbol"] for s in best.steps) == ["A", "B"]
    assert best.warnings == []
    on = preset_text("default").replace(
        "[filters.correlation_aware]\nenabled = false",
        "[filters.correlation_aware]\nenabled = true",
    )
    filtered = planner.run("Rebalance", raw, config=on).plan
    assert len(filtered.steps) == 1
    (warning,) = [w for w in filtered.warnings if "correlation_aware" in w]
    assert f"removed a plan scoring {best.score:.6f}" in warning
    assert f"above the plan chosen ({filtered.score:.6f})" in warning
