"""The sizing generator: its fast move scores agree with the score, its plans obey every
rule, and it reaches plans that the calculators' sizes alone miss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planforge.portfolio import HolisticPortfolioPlanner, parse_context
from planforge.portfolio._common import SELL, Book, arrange, make_trade, sized
from planforge.portfolio._model import model_for
from planforge.portfolio._scoring import evaluate_sequences
from planforge.portfolio._settings import PortfolioSettings
from planforge.portfolio._sizing import SizingProblem, search
from planforge.portfolio._sizing_moves import Moves
from planforge.portfolio.calculators import RebalanceSellsCalculator
from planforge.portfolio.planner import preset_text
from planforge.portfolio.sizing import OptimalSizingGenerator, _sequence
from tests.portfolio._optimality import generate_instance

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"
SETTINGS = PortfolioSettings()


def problem_of(raw: dict[str, Any], depth: int = 5) -> SizingProblem:
    return SizingProblem.of(model_for(parse_context(raw)), SETTINGS, depth)


def random_quantities(problem: SizingProblem, rng: np.random.Generator, count: int) -> Any:
    """Rows of allowed whole-lot quantities, a few securities changed in each."""
    n = len(problem.unit)
    rows = np.zeros((count, n))
    for row in rows:
        for i in rng.choice(n, size=min(n, 3), replace=False):
            low = -np.floor(problem.sell_max[i] / problem.lot[i])
            high = problem.buy_lots[i]
            if high > low:
                row[i] = rng.integers(int(low), int(high) + 1) * problem.lot[i]
    return rows


@pytest.mark.parametrize("seed", range(8))
def test_move_scores_agree_with_the_dense_score(seed: int) -> None:
    problem = problem_of(generate_instance(seed))
    rng = np.random.default_rng(seed)
    start = random_quantities(problem, rng, 1)[0]
    n = len(problem.unit)
    a, b = rng.integers(0, n, 200), rng.integers(-1, n, 200)
    b[b == a] = -1
    moves = Moves(a, rng.integers(-3, 4, 200) * problem.lot[a], b, rng.integers(-3, 4, 200) * 1.0)
    assert_scored_as_dense(problem, start, moves)


def assert_scored_as_dense(problem: SizingProblem, start: Any, moves: Moves) -> tuple[Any, Any]:
    """The moves' scores, cash and trades from `start` are the dense score's; the quantity
    rows and their cash, for more checks."""
    fast, cash, trades = problem.state(start).score(moves)
    rows = np.array([moves.apply(start, k) for k in range(len(moves.first))])
    dense, dense_cash = problem.raw_scores(rows)
    np.testing.assert_allclose(fast, dense, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cash, dense_cash, rtol=1e-12, atol=1e-6)
    assert (trades == np.count_nonzero(rows, axis=1)).all()
    return rows, dense_cash


@pytest.mark.parametrize("shape", ["one security", "pairs", "mixed"])
@pytest.mark.parametrize("seed", range(4))
def test_moves_of_every_batch_shape_score_and_check_as_the_dense_score(
    seed: int, shape: str
) -> None:
    problem = problem_of(generate_instance(seed))
    rng = np.random.default_rng(seed)
    start = random_quantities(problem, rng, 1)[0]
    state = problem.state(start)
    n = len(problem.unit)
    a = rng.integers(0, n, 300)
    b = {"one security": np.full(300, -1), "pairs": (a + rng.integers(1, n, 300)) % n}.get(
        shape, rng.integers(-1, n, 300)
    )
    b[b == a] = -1
    moves = Moves(a, rng.integers(-3, 4, 300) * problem.lot[a], b, rng.integers(-3, 4, 300) * 1.0)
    rows, dense_cash = assert_scored_as_dense(problem, start, moves)
    clear = np.abs(dense_cash) > 1e-6  # away from the edge, where sums in another order agree
    expected = (dense_cash >= 0) & (np.count_nonzero(rows, axis=1) <= 3)
    assert (state.allowed(moves, 3)[clear] == expected[clear]).all()


@pytest.mark.parametrize("seed", range(6))
def test_the_pair_matrix_gives_the_verdict_of_the_move_check_for_every_pair(seed: int) -> None:
    """Pairs the matrix allows are not checked again: it must agree with `State.allowed`
    exactly, to the last bit of each sum, at every depth."""
    problem = problem_of(generate_instance(seed))
    rng = np.random.default_rng(seed)
    state = problem.state(random_quantities(problem, rng, 1)[0])
    grid = problem.sizes(np.asarray(problem.tradable()), state.x, 8, np.array([1, 2, -1, -2]))
    owner, size = grid.first, grid.first_q
    left, right = (index.ravel() for index in np.indices((len(owner), len(owner))))
    pairs = Moves(owner[left], size[left], owner[right], size[right])
    for depth in (1, 2, 3, 5):
        matrix = state.allowed_pairs(owner, size, depth).ravel()
        assert (matrix == state.allowed(pairs, depth)).all()
        assert matrix.any()


def test_a_sizing_problem_is_built_once_while_its_model_and_settings_are_asked_for() -> None:
    model = model_for(parse_context(json.loads(EXAMPLE.read_text())))
    problem = SizingProblem.of(model, SETTINGS, 5)
    assert SizingProblem.of(model, SETTINGS, 5) is problem
    assert SizingProblem.of(model, SETTINGS, 4) is not problem
    other = PortfolioSettings(quality_weight=0.5)
    assert SizingProblem.of(model, other, 5).settings is other
    for depth in range(1, 10):  # more than are kept: the first is dropped, then rebuilt
        SizingProblem.of(model, other, depth)
    again = SizingProblem.of(model, SETTINGS, 5)
    assert again is not problem
    np.testing.assert_array_equal(again.buy_lots, problem.buy_lots)


@pytest.mark.parametrize("seed", range(8))
def test_the_dense_score_is_the_evaluations_score(seed: int) -> None:
    raw = generate_instance(seed)
    context = parse_context(raw)
    problem = problem_of(raw)
    rows = random_quantities(problem, np.random.default_rng(seed), 50)
    book = Book.of(context)
    sequences = [_sequence(book, problem, row) for row in rows]
    kept = [(row, seq) for row, seq in zip(rows, sequences, strict=True) if seq]
    scores, feasible, _ = evaluate_sequences(model_for(context), [s for _, s in kept], SETTINGS)
    dense, ok = problem.scores(np.array([row for row, _ in kept]))
    both = feasible & ok
    assert both.any()
    np.testing.assert_allclose(scores[both], dense[both], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_sizing_plans_obey_every_rule(seed: int) -> None:
    context = parse_context(generate_instance(seed))
    out = OptimalSizingGenerator().generate(context, [], {"max_depth": 3})
    if not out:
        return
    _, feasible, _ = evaluate_sequences(model_for(context), out, SETTINGS)
    assert feasible.all()
    for sequence in out:
        assert len(sequence) <= 3
        assert len({a.key for a in sequence}) == len(sequence)
        sides = [a.side for a in sequence]
        assert sides == sorted(sides, key=lambda side: side != SELL)
        assert not set(context.restrictions.ineligible) & {a.key for a in sequence}


def test_the_climb_only_goes_up() -> None:
    problem = problem_of(json.loads(EXAMPLE.read_text()))
    path = search(problem, rounds=40, coarse=24, pair_count=6)
    scores, ok = problem.scores(np.array(path))
    assert ok.all()
    assert (np.diff(scores) > 0).all()
    assert len(path) >= 3


def test_sizing_earns_its_place_in_the_default_preset() -> None:
    """The sample portfolio planned with and without it: it finds a better plan."""
    raw = json.loads(EXAMPLE.read_text())
    planner = HolisticPortfolioPlanner()
    with_sizing = planner.run("Rebalance", raw).plan
    text = preset_text("default").replace(
        "[sequence_generators.optimal_sizing]\nenabled = true",
        "[sequence_generators.optimal_sizing]\nenabled = false",
    )
    without = planner.run("Rebalance", raw, config=text).plan
    assert with_sizing.score is not None
    assert without.score is not None
    assert with_sizing.score > without.score + 0.005
    assert any(step.tags == ["sizing"] for step in with_sizing.steps)


# ------------------------------------------------------------ sizes the stages propose

LOTS_OF_TEN: dict[str, Any] = {
    "as_of": "2024-06-01",
    "cash": 3_000.0,
    "securities": [
        {"symbol": "A", "country": "X", "lot_size": 10},
        {"symbol": "B", "country": "Y", "price": 50.0},
    ],
    "positions": [
        {
            "symbol": "A",
            "quantity": 20,
            "average_price": 400.0,
            "current_price": 500.0,
            "first_bought": "2020-01-01",
        },
    ],
    "targets": {"by_country": {"X": 0.41, "Y": 0.59}},
}


def test_a_sell_smaller_than_one_lot_is_also_proposed_rounded_up() -> None:
    """Country X is 77% of the portfolio against 41%: the excess is worth 4,680, less than
    one lot of A (10 x 500), so rounding down alone proposed no sell at all."""
    sells = RebalanceSellsCalculator().calculate(parse_context(LOTS_OF_TEN), None)
    assert [(a.key, a.quantity) for a in sells] == [("A", 10)]


def test_the_planner_rebalances_a_portfolio_whose_lots_are_large() -> None:
    plan = HolisticPortfolioPlanner().run("Rebalance", LOTS_OF_TEN).plan
    assert [(s.action, s.params["symbol"]) for s in plan.steps][:1] == [("sell", "A")]
    assert plan.metrics["improvement"] > 0.1


def test_sized_gives_both_roundings_once() -> None:
    book = Book.of(parse_context(LOTS_OF_TEN))
    trade = {"value": 4_680.0, "priority": 0.5, "category": "t", "reason": "r"}
    assert [a.quantity for a in sized(book, SELL, "A", **trade)] == [10]  # down is nothing
    exact = {**trade, "value": 5_000.0}
    assert [a.quantity for a in sized(book, SELL, "A", **exact)] == [10]


def test_a_buy_larger_than_the_cash_is_cut_to_what_the_cash_pays() -> None:
    context = parse_context({**LOTS_OF_TEN, "costs": {"fixed": 2.0, "percent": 0.001}})
    book = Book.of(context)
    big = make_trade(book, "buy", "B", quantity=100, priority=0.9, category="t", reason="r")
    assert big is not None
    assert big.value == 5_000.0
    (cut,) = arrange(context, (), (big,))
    assert cut.quantity == 59  # 59 x 50 + 2 + 2.95 <= 3,000 < 60 x 50 + ...
    assert "cut to the cash" in cut.reason


def test_the_sizing_generator_scores_with_the_configurations_own_weights() -> None:
    planner = HolisticPortfolioPlanner()
    text = preset_text("default").replace("[planner]\n", "[planner]\nquality_weight = 3.0\n")
    engine = planner.engine(text)
    (params,) = [p for key, _, p in engine._modules["sequence_generators"] if "sizing" in key]
    assert params.scoring.quality_weight == 3.0
    assert (
        "scoring"
        not in engine.config.to_dict()["modules"]["sequence_generators"]["optimal_sizing"]["params"]
    )


def test_a_module_table_may_not_set_the_scoring_weights() -> None:
    from planforge.holistic.errors import ConfigError

    text = preset_text("default") + (
        "\n[sequence_generators.optimal_sizing.params]\nscoring = { quality_weight = 1.0 }\n"
    )
    with pytest.raises(ConfigError, match=r"\[planner\] keys"):
        HolisticPortfolioPlanner().engine(text)
