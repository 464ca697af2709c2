"""Trade sizes chosen for the score itself: a local search over whole lots.

The calculators propose sizes from rules of thumb (a fraction, a gap to a target); the
best plan often needs sizes no rule proposes: a sell just large enough to pay for a buy,
a buy that lands a country exactly on its target while the cash lasts. `SizingProblem`
states the choice as one signed quantity per security (whole lots, at most `max_depth`
trades, cash never below zero, every trading rule) and scores a whole batch of quantity
vectors at once with the score of `planforge.portfolio.evaluation` written over dense
arrays. `search` climbs from the current portfolio: each round scores every change of one
security's quantity and every change of a pair (sell one to pay for another, swap one trade
for another when the depth is used up) over a coarse grid plus the lots next to the current
size, and takes the best, until nothing improves. The plan it finds is scored again by the
evaluation, like every other candidate, so the search only has to be good, not exact.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from planforge.holistic.modules import Action
from planforge.portfolio._arrays import BoolArray, FloatArray, IntArray
from planforge.portfolio._model import PortfolioModel
from planforge.portfolio._rules import action_problem
from planforge.portfolio._scoring import INVESTED_EPSILON
from planforge.portfolio._settings import PortfolioSettings
from planforge.portfolio._sizing_moves import Moves, Scored, State, trade_costs

__all__ = ["SizingProblem", "search"]

_FIBONACCI = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987])
#: Lots next to the current size that every round tries, on both sides.
_STEPS = np.concatenate((_FIBONACCI, -_FIBONACCI))
#: The same for pair moves, whose grids multiply.
_PAIR_STEPS = np.array([1, 2, 5, -1, -2, -5])
_IMPROVES = 1e-12
#: Next-best moves tried beside the best one in each round.
_JOINED_TRIES = 64
#: Problems kept for the models and settings asked for last (a planner replans a portfolio).
_PROBLEMS_KEPT = 8
_PROBLEMS: OrderedDict[tuple[int, int, int], SizingProblem] = OrderedDict()
_PROBLEMS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SizingProblem:
    """One context's quantities as arrays: what may be traded, in which lots, at what value."""

    model: PortfolioModel
    settings: PortfolioSettings
    max_depth: int
    unit: FloatArray  # base-currency value of one unit (0 when it cannot be priced)
    lot: FloatArray
    #: Most units that may be sold (0: no sell) and most lots that may be bought (0: no buy).
    sell_max: FloatArray
    buy_lots: FloatArray
    min_units: FloatArray  # fewest units of a trade worth `min_trade_value`
    groups: tuple[tuple[FloatArray, FloatArray], ...]  # (membership n x g, targets g)

    @classmethod
    def of(
        cls, model: PortfolioModel, settings: PortfolioSettings, max_depth: int
    ) -> SizingProblem:
        """The problem of a model under settings, built once while it is among the last few
        asked for (a model and a frozen settings object never change, and the problem holds
        both, so their ids cannot be reused while it is kept)."""
        key = (id(model), id(settings), max_depth)
        with _PROBLEMS_LOCK:
            known = _PROBLEMS.get(key)
            if known is not None:
                _PROBLEMS.move_to_end(key)
                return known
        problem = cls._build(model, settings, max_depth)
        with _PROBLEMS_LOCK:
            _PROBLEMS[key] = problem
            while len(_PROBLEMS) > _PROBLEMS_KEPT:
                _PROBLEMS.popitem(last=False)
        return problem

    @classmethod
    def _build(
        cls, model: PortfolioModel, settings: PortfolioSettings, max_depth: int
    ) -> SizingProblem:
        unit = np.nan_to_num(model.price * model.fx, nan=0.0)
        securities = model.context.securities
        lot = np.array([float(s.lot_size) for s in securities], dtype=np.float64)
        free = settings.model_copy(update={"min_trade_value": 0.0})
        sell_max = np.array(
            [
                q if q > 0 and _may(model, free, "sell", s.symbol, q) else 0.0
                for q, s in zip(model.quantity.tolist(), securities, strict=True)
            ]
        )
        costs = model.context.costs
        proceeds = float(np.sum(sell_max * unit)) * (1.0 - costs.percent)
        budget = max(0.0, model.cash + proceeds)
        buy_lots = np.zeros(len(securities))
        for i, security in enumerate(securities):
            lot_value = unit[i] * lot[i] * (1.0 + costs.percent)
            if lot_value > 0 and _may(model, free, "buy", security.symbol, lot[i]):
                buy_lots[i] = math.floor(budget / lot_value)
        minimum = settings.min_trade_value
        minimum = model.context.min_trade_value if minimum is None else minimum
        with np.errstate(divide="ignore", invalid="ignore"):
            min_units = np.where(unit > 0, minimum / unit, np.inf)
        groups = []
        for target_set in model.target_sets:
            member = np.zeros((len(securities), len(target_set.groups)))
            for i, g in enumerate(target_set.group_of.tolist()):
                if g >= 0:
                    member[i, g] = 1.0
            groups.append((member, target_set.targets))
        for shared in (unit, lot, sell_max, buy_lots, min_units, *(m for m, _ in groups)):
            shared.flags.writeable = False  # one problem serves every thread planning it
        return cls(
            model, settings, max_depth, unit, lot, sell_max, buy_lots, min_units, tuple(groups)
        )

    def state(self, x: FloatArray) -> State:
        """The sums of the score at quantities `x`, to score moves away from them."""
        model, s, costs = self.model, self.settings, self.model.context.costs
        return State.at(
            x,
            unit=self.unit,
            quality=model.quality,
            held_value=model.value,
            cash=model.cash,
            costs=(costs.fixed, costs.percent),
            sets=model.target_sets,
            weights=(
                s.allocation_weight,
                s.diversification_weight,
                s.quality_weight,
                s.cost_penalty_factor,
            ),
        )

    def tradable(self) -> list[int]:
        return [i for i in range(len(self.unit)) if self.sell_max[i] > 0 or self.buy_lots[i] > 0]

    def sizes(self, index: IntArray, x: FloatArray, coarse: int, steps: IntArray) -> Moves:
        """Each security's quantities worth trying, except its current one: 0, `coarse` sizes
        spread over all it may sell or buy, the whole position, and the lots next to its
        current size (`steps` lots away, each given with both signs)."""
        lot, current = self.lot[index], x[index]
        sell_max = self.sell_max[index]
        low = -np.floor(sell_max / lot + 1e-9)
        high = self.buy_lots[index]
        spread = _spread(coarse)
        here = np.where(current > -sell_max, np.round(current / lot), low)
        lots = np.concatenate(
            (
                np.round(low[:, None] + (high - low)[:, None] * spread[None, :]),
                here[:, None] + steps[None, :],
            ),
            axis=1,
        )
        lots[(lots < low[:, None]) | (lots > high[:, None])] = np.nan
        quantity = np.concatenate(
            (lots * lot[:, None], np.zeros((len(index), 1)), -sell_max[:, None]), axis=1
        )
        small = np.abs(quantity) < self.min_units[index][:, None] - 1e-9
        quantity[(small & (quantity != 0)) | (quantity == current[:, None])] = np.nan
        quantity = np.sort(quantity, axis=1)  # nan last
        quantity[:, 1:][quantity[:, 1:] == quantity[:, :-1]] = np.nan
        keep = ~np.isnan(quantity)
        owner = np.broadcast_to(index[:, None], quantity.shape)[keep]
        return Moves(owner, quantity[keep], np.full(len(owner), -1), np.zeros(len(owner)))

    def spent_each(self, index: IntArray, quantities: FloatArray) -> FloatArray:
        """Cash each trade takes (a sell gives: negative), costs included."""
        moved = quantities * self.unit[index]
        costs = self.model.context.costs
        result: FloatArray = moved + trade_costs(quantities, moved, costs.fixed, costs.percent)
        return result

    def affordable_each(self, index: IntArray, cash: FloatArray) -> FloatArray:
        """The most of each security (whole lots) its amount of cash pays for, or 0."""
        costs = self.model.context.costs
        lot_value = self.unit[index] * self.lot[index] * (1.0 + costs.percent)
        with np.errstate(divide="ignore", invalid="ignore"):
            lots = np.floor(np.maximum(0.0, cash - costs.fixed) / lot_value)
        lots = np.where(self.buy_lots[index] > 0, np.minimum(lots, self.buy_lots[index]), 0.0)
        result: FloatArray = lots * self.lot[index]
        return result

    def scores(self, quantities: FloatArray) -> tuple[FloatArray, BoolArray]:
        """The score of every row of signed quantities (-inf when a row is not allowed)."""
        score, cash = self.raw_scores(quantities)
        ok = (cash >= 0) & (np.count_nonzero(quantities, axis=1) <= self.max_depth)
        return np.where(ok, score, -np.inf), ok

    def raw_scores(self, quantities: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The score of every row, and its cash at the end, whatever the cash and depth."""
        model, s = self.model, self.settings
        moved = quantities * self.unit
        costs = model.context.costs
        cost = trade_costs(quantities, moved, costs.fixed, costs.percent).sum(axis=1)
        value = model.value + moved
        cash = model.cash - moved.sum(axis=1) - cost
        total = model.total - cost
        invested = value.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(total > 0, 1.0 / total, 0.0)
            fits = [
                1.0 - 0.5 * np.abs((value @ member) * x[:, None] - targets).sum(axis=1)
                for member, targets in self.groups
            ]
            allocation = np.mean(fits, axis=0) if fits else np.ones(len(quantities))
            live = invested > INVESTED_EPSILON * np.maximum(total, 0.0)
            safe = np.where(live, invested, 1.0)
            diversification = np.where(live, 1.0 - (value * value).sum(axis=1) / safe**2, 0.0)
            quality = np.where(live, (value @ model.quality) / safe, 0.0)
        weights = s.allocation_weight + s.diversification_weight + s.quality_weight
        score = (
            s.allocation_weight * allocation
            + s.diversification_weight * diversification
            + s.quality_weight * quality
        ) / weights
        if model.total > 0:
            score = score - cost / model.total * s.cost_penalty_factor
        return score, cash


@functools.lru_cache(maxsize=8)
def _spread(points: int) -> FloatArray:
    """`points` fractions from 0 to 1 (read-only: shared by every call)."""
    spread = np.linspace(0.0, 1.0, points)
    spread.flags.writeable = False
    return spread


def _may(
    model: PortfolioModel, settings: PortfolioSettings, side: str, symbol: str, quantity: float
) -> bool:
    probe = Action(
        side=side, key=symbol, quantity=quantity, price=0.0, value=0.0, priority=0.0, category=""
    )
    return action_problem(model, settings, probe) is None


def _pairs(problem: SizingProblem, state: State, grid: Moves, ranked: list[int]) -> Moves:
    """Two securities changed together, as far as the cash and depth allow: every two sizes
    of two ranked securities, and each size of one with the other buying all the cash that
    then remains. (The matrix check gives the verdicts `State.allowed` would, so only the
    funded pairs are checked here.)"""
    owner, size = grid.first, grid.first_q
    ordered = owner[:, None] < owner[None, :]
    left, right = np.nonzero(ordered & state.allowed_pairs(owner, size, problem.max_depth))
    both = Moves(owner[left], size[left], owner[right], size[right])
    others = np.asarray(ranked)
    entry, other = np.nonzero(owner[:, None] != others[None, :])
    a, b = owner[entry], others[other]
    spent = state.cost + state.x * problem.unit
    cash = state.cash + spent[a] + spent[b] - problem.spent_each(a, size[entry])
    funded = Moves(a, size[entry], b, problem.affordable_each(b, cash))
    return Moves.join([both, funded.subset(state.allowed(funded, problem.max_depth))])


def _moves(
    problem: SizingProblem, state: State, active: list[int], coarse: int, pair_count: int
) -> tuple[Moves, Scored, Moves]:
    """Every one-security change with its score, then the pair changes the cash and depth
    allow among the most promising securities (unscored)."""
    x = state.x
    index = np.asarray(active)
    spent = state.cost + x * problem.unit
    cash = state.cash + spent[index]
    funded = problem.affordable_each(index, cash)
    one = Moves.join(
        [
            problem.sizes(index, x, coarse, _STEPS),
            Moves(index, funded, np.full(len(index), -1), np.zeros(len(index))),
        ]
    )
    # rank securities by what one change gains when cash and depth are ignored
    scored = state.score(one)
    best = np.full(len(problem.unit), -np.inf)
    np.maximum.at(best, one.first, scored[0])
    ranked = sorted(active, key=lambda i: (-best[i], i))[:pair_count]
    ranked += [i for i in active if x[i] != 0 and i not in ranked]
    if len(ranked) < 2:
        return one, scored, Moves.none()
    grid = problem.sizes(np.asarray(ranked), x, max(3, coarse // 3), _PAIR_STEPS)
    return one, scored, _pairs(problem, state, grid, ranked)


def _allowed(
    problem: SizingProblem, state: State, one: Moves, scored: Scored, pairs: Moves
) -> tuple[Moves, Scored]:
    """The moves the cash and depth allow (the pairs are allowed already), one-security moves
    first, with their scores: those of one security keep the scores they were ranked by (the
    score of a move does not depend on the batch it is in), and only the pairs are scored
    here."""
    keep_one = state.allowed(one, problem.max_depth)
    kept_pairs = pairs
    moves = Moves.join([one.subset(keep_one), kept_pairs])
    if not len(kept_pairs.first):
        return moves, (scored[0][keep_one], scored[1][keep_one], scored[2][keep_one])
    pair_scores = state.score(kept_pairs)
    score, cash, trades = (
        np.concatenate((ranked[keep_one], paired))
        for ranked, paired in zip(scored, pair_scores, strict=True)
    )
    return moves, (score, cash, trades)


def search(
    problem: SizingProblem,
    *,
    rounds: int,
    coarse: int,
    pair_count: int,
    start: FloatArray | None = None,
) -> list[FloatArray]:
    """The quantity vectors the climb passed through, best (last) included, from the
    current portfolio; each round takes the best move, and the climb stops when none gains."""
    active = problem.tradable()
    state = problem.state(np.zeros(len(problem.unit)) if start is None else start)
    here = float(problem.scores(state.x[None, :])[0][0])
    path: list[FloatArray] = []
    for _ in range(rounds):
        if not active:
            break
        one, scored, pairs = _moves(problem, state, active, coarse, pair_count)
        moves, (scores, cash, trades) = _allowed(problem, state, one, scored, pairs)
        if not len(moves.first):
            break
        scores[(cash < 0) | (trades > problem.max_depth)] = -np.inf  # float edge cases
        best = int(np.argmax(scores))
        if not scores[best] > here + _IMPROVES:
            break
        x, here = _combined(problem, moves, scores, state.x, best)
        state = problem.state(x)
        path.append(x)
    return path


def _combined(
    problem: SizingProblem, moves: Moves, scores: FloatArray, x: FloatArray, best: int
) -> tuple[FloatArray, float]:
    """The best move, joined by the next best moves of other securities while each makes
    the whole better: independent improvements are taken in one round, not one per round.
    Each pass scores every remaining candidate added to what is chosen, in one batch."""
    chosen = moves.apply(x, best)
    score = float(scores[best])
    order = np.argsort(-scores, kind="stable")[1:_JOINED_TRIES]
    order = order[np.isfinite(scores[order])]
    first, second = moves.first, moves.second
    touched = np.zeros(len(x) + 1, dtype=np.bool_)  # the last slot stands for "no security"
    touched[[first[best], second[best]]] = True
    touched[-1] = False
    while len(order):
        free = order[~(touched[first[order]] | touched[second[order]])]
        if not len(free):
            break
        trials = np.repeat(chosen[None, :], len(free), axis=0)
        rows = np.arange(len(free))
        trials[rows, first[free]] = moves.first_q[free]
        paired = second[free] >= 0
        trials[rows[paired], second[free][paired]] = moves.second_q[free][paired]
        trial_scores, _ = problem.scores(trials)
        pick = int(np.argmax(trial_scores))
        if not trial_scores[pick] > score + _IMPROVES:
            break
        chosen, score = trials[pick], float(trial_scores[pick])
        k = int(free[pick])
        touched[[first[k], second[k]]] = True
        touched[-1] = False
        order = free[free != k]
    return chosen, score
