"""The built-in sequence generators: ordering, exhaustive mode, bounds, determinism."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from pydantic import ValidationError

from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio import generators
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.generators import BeamSearchGenerator, CombinatorialGenerator
from tests.portfolio.test_calculators import literal_metadata


def act(side: str, key: str, priority: float, value: float = 100.0) -> Action:
    return Action(
        side=side,
        key=key,
        quantity=value / 10,
        price=10.0,
        value=value,
        priority=priority,
        category="test",
    )


def context(cash: float = 1_000_000.0, **extra: Any) -> PortfolioContext:
    return parse_context({"as_of": "2024-06-01", "cash": cash, **extra})


def sells_first(sequence: ActionSequence) -> bool:
    sides = [a.side for a in sequence]
    return sides == sorted(sides, key=lambda s: s != "sell")


# ---------------------------------------------------------------- combinatorial


def test_combinatorial_sorts_by_priority_before_truncating() -> None:
    weak = [act("buy", f"W{i:02d}", 0.1 + i / 100) for i in range(12)]
    best = act("sell", "BEST", 0.99)
    candidates = [*weak, best]  # the best listed last, 13 > max_candidates
    params = {"max_depth": 2, "exhaustive_limit": 0}
    out = CombinatorialGenerator().generate(context(), candidates, params)
    used = {a.key for s in out for a in s}
    assert "BEST" in used
    assert "W00" not in used  # the weakest is the one cut
    assert out[0] == (best,)


def test_combinatorial_normal_mode_order_and_bounds() -> None:
    candidates = [act("sell", "S1", 0.9), act("sell", "S2", 0.8)] + [
        act("buy", f"B{i}", 0.7 - i / 100) for i in range(12)
    ]
    params = {"max_depth": 3, "exhaustive_limit": 0}
    out = CombinatorialGenerator().generate(context(), candidates, params)
    assert [len(s) for s in out] == sorted(len(s) for s in out)  # shortest first
    assert out[:2] == [(candidates[0],), (candidates[1],)]  # sells lead at each length
    assert all(sells_first(s) for s in out)
    assert all(1 <= len(s) <= 3 for s in out)
    n = 12  # kept candidates
    assert len(out) == sum(math.comb(n, k) for k in range(1, 4))
    capped = CombinatorialGenerator().generate(
        context(), candidates, {"max_combinations": 7, "exhaustive_limit": 0}
    )
    assert capped == out[:7]


def test_combinatorial_exhaustive_mode_enumerates_every_subset_sells_first() -> None:
    candidates = [
        act("buy", "B1", 0.2),
        act("sell", "S1", 0.9),
        act("buy", "B2", 0.8),
        act("sell", "S2", 0.3),
        act("buy", "B3", 0.5),
        act("sell", "S3", 0.6),
    ]
    params = {"max_depth": 3, "max_candidates": 2, "max_combinations": 1}  # both ignored here
    out = CombinatorialGenerator().generate(context(), candidates, params)
    expected = {frozenset(c) for k in range(1, 4) for c in itertools.combinations(candidates, k)}
    assert {frozenset(s) for s in out} == expected
    assert len(out) == len(expected) == 6 + 15 + 20
    assert all(sells_first(s) for s in out)


def test_combinatorial_exhaustive_mode_skips_a_symbol_bought_and_sold() -> None:
    candidates = [act("sell", "A", 0.9), act("buy", "A", 0.8), act("buy", "B", 0.7)]
    out = CombinatorialGenerator().generate(context(), candidates, {"max_depth": 3})
    assert {tuple(a.identity() for a in s) for s in out} == {
        (("sell", "A"),),
        (("buy", "A"),),
        (("buy", "B"),),
        (("sell", "A"), ("buy", "B")),
        (("buy", "A"), ("buy", "B")),
    }


def test_combinatorial_exhaustive_mode_only_for_small_instances() -> None:
    many = [act("buy", f"B{i:02d}", 0.5 + i / 100) for i in range(11)]
    params_dict = {"max_depth": 3, "max_candidates": 4, "exhaustive_limit": 0}
    out = CombinatorialGenerator().generate(context(), many, params_dict)
    assert {a.key for s in out for a in s} == {"B10", "B09", "B08", "B07"}
    params = CombinatorialGenerator.Params(max_depth=4, exhaustive_limit=0)
    assert not CombinatorialGenerator.exhaustive(5, params)
    assert CombinatorialGenerator.exhaustive(10, CombinatorialGenerator.Params(max_depth=3))
    assert not CombinatorialGenerator.exhaustive(
        3, CombinatorialGenerator.Params(exhaustive_below=0, exhaustive_limit=0)
    )


def test_combinatorial_enumerates_every_subset_when_they_are_few_at_the_default_depth() -> None:
    """14 candidates at depth 5 make 3,472 subsets, within the default limit of 4,096; one
    more candidate makes 4,943, and the usual bounds apply again (the best 12 candidates)."""
    fourteen = [act("buy", f"B{i:02d}", 0.5 + i / 100) for i in range(14)]
    assert CombinatorialGenerator.subsets(fourteen, 5) == 3472
    out = CombinatorialGenerator().generate(context(), fourteen, None)
    assert len(out) == 3472
    fifteen = [*fourteen, act("buy", "B99", 0.1)]
    assert len(CombinatorialGenerator().generate(context(), fifteen, None)) == sum(
        math.comb(12, k) for k in range(1, 6)
    )


def test_combinatorial_counts_one_size_of_a_symbol_per_subset() -> None:
    variants = [act("buy", "A", 0.9, value=100), act("buy", "A", 0.8, value=200)]
    candidates = [*variants, act("sell", "B", 0.7)]
    assert CombinatorialGenerator.subsets(candidates, 5) == 2 + 1 + 2  # A1, A2, B, A+B twice
    out = CombinatorialGenerator().generate(context(), candidates, None)
    assert len(out) == 5


def test_combinatorial_keeps_variants_but_drops_exact_duplicates() -> None:
    small = act("sell", "A", 0.9, value=100)
    big = act("sell", "A", 0.8, value=300)
    out = CombinatorialGenerator().generate(context(), [small, small, big], None)
    assert out == [(small,), (big,)]


def test_combinatorial_is_deterministic_whatever_the_input_order() -> None:
    candidates = [
        act(random.Random(i).choice(("buy", "sell")), f"K{i}", (i * 37 % 11) / 11)
        for i in range(14)
    ]
    params = {"exhaustive_limit": 0}
    reference = CombinatorialGenerator().generate(context(), candidates, params)
    shuffled = list(candidates)
    random.Random(7).shuffle(shuffled)
    assert CombinatorialGenerator().generate(context(), shuffled, params) == reference
    assert len(reference) <= 2000


def test_combinatorial_default_bound_holds_at_its_largest_settings() -> None:
    candidates = [act("buy", f"B{i:02d}", 0.5) for i in range(40)]
    params = {"max_candidates": 40, "max_depth": 10, "max_combinations": 500}
    assert len(CombinatorialGenerator().generate(context(), candidates, params)) == 500


# ---------------------------------------------------------------- beam search


def test_beam_search_keeps_the_best_and_respects_its_bound() -> None:
    candidates = [act("sell", f"S{i}", 0.9 - i / 20) for i in range(4)] + [
        act("buy", f"B{i}", 0.78 - i / 20) for i in range(6)
    ]
    out = BeamSearchGenerator().generate(context(), candidates, {"beam_width": 3, "max_depth": 4})
    assert len(out) <= 3 * 4
    assert out[0] == (candidates[0],)
    assert len(set(out)) == len(out)
    for sequence in out:
        assert sells_first(sequence)
        assert len({a.key for a in sequence}) == len(sequence)
    # width 1 is greedy: the best available step each time, sells before buys
    (a, b, c) = BeamSearchGenerator().generate(
        context(), candidates, {"beam_width": 1, "max_depth": 3}
    )
    assert [x.key for x in c] == ["S0", "S1", "S2"]
    assert a == c[:1]
    assert b == c[:2]


def test_beam_search_never_lists_a_buy_cash_cannot_cover() -> None:
    candidates = [
        act("buy", "PRICEY", 0.99, value=500),
        act("sell", "S", 0.5, value=300),
        act("buy", "CHEAP", 0.4, value=100),
    ]
    ctx = context(cash=250, costs={"fixed": 1.0})
    out = BeamSearchGenerator().generate(ctx, candidates, None)
    for sequence in out:
        cash = ctx.cash
        for action in sequence:
            cash += action.value - 1 if action.side == "sell" else -(action.value + 1)
            assert cash >= 0
    keysets = [[a.key for a in s] for s in out]
    assert ["S", "PRICEY"] in keysets  # affordable once the sell came first
    assert ["PRICEY"] not in keysets


def test_beam_search_weighs_costs() -> None:
    tiny = act("buy", "TINY", 0.6, value=20)  # a fixed fee of 10 is half its value
    solid = act("buy", "SOLID", 0.5, value=1000)
    ctx = context(costs={"fixed": 10.0})
    first = BeamSearchGenerator().generate(ctx, [tiny, solid], {"beam_width": 1, "max_depth": 1})
    assert first == [(solid,)]
    free = BeamSearchGenerator().generate(
        ctx, [tiny, solid], {"beam_width": 1, "max_depth": 1, "cost_weight": 0.0}
    )
    assert free == [(tiny,)]


def test_beam_search_is_deterministic_and_truncates_after_sorting() -> None:
    candidates = [act("buy", f"B{i:02d}", i / 30) for i in range(30)]
    shuffled = list(candidates)
    random.Random(3).shuffle(shuffled)
    params = {"max_candidates": 5, "beam_width": 4, "max_depth": 2}
    out = BeamSearchGenerator().generate(context(), shuffled, params)
    assert out == BeamSearchGenerator().generate(context(), candidates, params)
    assert {a.key for s in out for a in s} <= {"B29", "B28", "B27", "B26", "B25"}


def test_generators_return_nothing_for_no_candidates() -> None:
    assert CombinatorialGenerator().generate(context(), [], None) == []
    assert BeamSearchGenerator().generate(context(), [], None) == []


# ---------------------------------------------------------------- params and metadata


@pytest.mark.parametrize("generator", [CombinatorialGenerator, BeamSearchGenerator])
def test_params_take_max_depth_and_reject_nonsense(generator: Any) -> None:
    assert generator.parse_params({"max_depth": 3}).max_depth == 3
    with pytest.raises(ValidationError, match="max_depth"):
        generator.parse_params({"max_depth": 0})
    with pytest.raises(ValidationError, match="unknown"):
        generator.parse_params({"unknown": 1})
    for name, field in generator.Params.model_fields.items():
        assert field.description, name
        assert not field.is_required()


def test_combinatorial_defaults_are_the_documented_ones() -> None:
    params = CombinatorialGenerator.Params()
    assert (params.max_depth, params.max_candidates) == (5, 12)
    assert (params.exhaustive_below, params.exhaustive_max_depth) == (10, 3)
    assert BeamSearchGenerator.Params().beam_width == 10


def test_metadata_is_literal_and_complete() -> None:
    found = literal_metadata(generators)
    for generator in (CombinatorialGenerator, BeamSearchGenerator):
        attrs = found[generator.__name__]
        assert attrs["name"] == generator.name
        assert attrs["version"] == "1.0.0"
        assert attrs["author"] == "planforge"
        assert attrs["description"]
        assert attrs["tags"]
        assert attrs["dependencies"] == ()
        assert generator.kind == "sequence_generators"


@pytest.mark.parametrize(
    ("count", "params"),
    [
        (6, {"max_depth": 3}),  # exhaustive
        (14, {"max_depth": 3}),
        (14, {"max_depth": 5, "max_combinations": 300}),
        (30, {"max_depth": 2, "max_candidates": 20}),
    ],
)
def test_estimates_bound_the_real_output(count: int, params: dict[str, Any]) -> None:
    candidates = [act("buy" if i % 3 else "sell", f"K{i:02d}", i / 40) for i in range(count)]
    combinatorial = CombinatorialGenerator().generate(context(), candidates, params)
    parsed = CombinatorialGenerator.parse_params(params)
    estimate = CombinatorialGenerator.estimate_output(parsed, candidates=count, max_depth=10)
    assert estimate == len(combinatorial)  # distinct symbols: the bound is exact
    beam = BeamSearchGenerator().generate(context(), candidates, {"max_depth": 4})
    beam_params = BeamSearchGenerator.parse_params({"max_depth": 4})
    assert len(beam) <= BeamSearchGenerator.estimate_output(
        beam_params, candidates=count, max_depth=10
    )
