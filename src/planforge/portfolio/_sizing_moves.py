"""Scores of many small changes to one set of quantities, without rebuilding the portfolio.

A move changes the quantity of one security, or of two. Every sum the score needs (invested
value, sum of squares, quality, costs, each group's value) is known for the state being
changed, so a move's score costs a few operations on arrays as long as the batch, not a
pass over every security: the allocation terms of the groups a move leaves alone are the
state's piecewise-linear function of 1 / T (`planforge.portfolio._targets`), corrected for
the one or two groups it touches, as the evaluation kernel does for a sequence's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planforge.portfolio._arrays import BoolArray, FloatArray, IntArray
from planforge.portfolio._scoring import INVESTED_EPSILON
from planforge.portfolio._targets import TargetSet

__all__ = ["Groups", "Moves", "Scored", "State", "trade_costs"]

#: Each move's score, its cash at the end and its number of trades.
Scored = tuple[FloatArray, FloatArray, IntArray]


def trade_costs(
    quantity: FloatArray, moved: FloatArray, fixed: float, percent: float
) -> FloatArray:
    """The cost of each trade moving `moved` (base currency) for a `quantity` (0: no trade)."""
    cost: FloatArray = np.where(quantity != 0, fixed + percent * np.abs(moved), 0.0)
    return cost


@dataclass(frozen=True, slots=True)
class Moves:
    """A batch of moves: security `first[k]` to quantity `first_q[k]` and, where
    `second[k] >= 0`, security `second[k]` (another one) to `second_q[k]`."""

    first: IntArray
    first_q: FloatArray
    second: IntArray
    second_q: FloatArray

    @classmethod
    def join(cls, parts: list[Moves]) -> Moves:
        return cls(
            np.concatenate([p.first for p in parts]),
            np.concatenate([p.first_q for p in parts]),
            np.concatenate([p.second for p in parts]),
            np.concatenate([p.second_q for p in parts]),
        )

    @classmethod
    def none(cls) -> Moves:
        nothing = np.zeros(0, dtype=np.intp)
        return cls(nothing, np.zeros(0), nothing, np.zeros(0))

    @classmethod
    def single(cls, first: int, quantities: FloatArray) -> Moves:
        count = len(quantities)
        return cls(np.full(count, first), quantities, np.full(count, -1), np.zeros(count))

    @classmethod
    def pair(cls, first: int, first_q: FloatArray, second: int, second_q: FloatArray) -> Moves:
        count = len(first_q)
        return cls(np.full(count, first), first_q, np.full(count, second), second_q)

    def subset(self, keep: BoolArray) -> Moves:
        return Moves(self.first[keep], self.first_q[keep], self.second[keep], self.second_q[keep])

    def apply(self, x: FloatArray, k: int) -> FloatArray:
        y = x.copy()
        y[self.first[k]] = self.first_q[k]
        if self.second[k] >= 0:
            y[self.second[k]] = self.second_q[k]
        return y


@dataclass(frozen=True, slots=True)
class Groups:
    """Every target set's groups side by side, so the allocation change of a batch of moves
    is one pass over all sets, not one per set. Securities without a target in a set point
    to a last, empty group and are masked out by `hit`."""

    index: IntArray  # (sets, securities): the security's group among all sets' groups
    hit: BoolArray  # (sets, securities): whether that group has a target
    current: FloatArray  # held value per group, the empty group last
    targets: FloatArray

    @classmethod
    def of(cls, sets: tuple[TargetSet, ...]) -> Groups:
        empty = sum(len(target_set.groups) for target_set in sets)
        rows, offset = [], 0
        for target_set in sets:
            rows.append(np.where(target_set.group_of >= 0, target_set.group_of + offset, empty))
            offset += len(target_set.groups)
        index = np.array(rows, dtype=np.intp) if rows else np.zeros((0, 0), dtype=np.intp)
        current = np.concatenate([ts.current for ts in sets] + [np.zeros(1)])
        targets = np.concatenate([ts.targets for ts in sets] + [np.zeros(1)])
        return cls(index, index != empty, current, targets)


@dataclass(frozen=True, slots=True)
class State:
    """Quantities `x` and every sum of the score at them; scores moves away from them."""

    x: FloatArray
    unit: FloatArray
    quality: FloatArray
    fixed: float
    percent: float
    value: FloatArray  # per security, base currency
    cost: FloatArray  # per security, of its trade in x
    cash: float
    total0: float  # before any trade
    sums: tuple[float, float, float, float]  # invested, sum v^2, sum q v, costs
    sets: tuple[TargetSet, ...]
    groups: Groups
    weights: tuple[float, float, float, float]  # allocation, diversification, quality, k

    def trade_cost(self, i: IntArray, q: FloatArray) -> FloatArray:
        return trade_costs(q, q * self.unit[i], self.fixed, self.percent)

    def allowed(self, moves: Moves, max_depth: int) -> BoolArray:
        """The moves that keep the cash at or above zero and the trades within `max_depth`:
        checked before scoring, since most pairs of sizes are not. (The second security's
        terms are added only where a move has one, as in `score`.)"""
        a = moves.first
        spend = (moves.first_q - self.x[a]) * self.unit[a]
        spend += self.trade_cost(a, moves.first_q) - self.cost[a]
        trades = int(np.count_nonzero(self.x)) + (moves.first_q != 0) - (self.x[a] != 0)
        b = moves.second
        if len(b) and int(b.max()) >= 0:
            mask = b >= 0 if int(b.min()) < 0 else None
            b = b if mask is None else np.where(mask, b, 0)
            more = (moves.second_q - self.x[b]) * self.unit[b]  # summed as `allowed_pairs` does
            more = more + self.trade_cost(b, moves.second_q) - self.cost[b]
            changed = (moves.second_q != 0).astype(np.intp) - (self.x[b] != 0)
            spend += more if mask is None else np.where(mask, more, 0.0)
            trades = trades + (changed if mask is None else mask * changed)
        ok: BoolArray = (self.cash - spend >= 0) & (trades <= max_depth)
        return ok

    def allowed_pairs(self, owner: IntArray, size: FloatArray, max_depth: int) -> BoolArray:
        """`allowed` for every move of `owner[i]` to `size[i]` with `owner[j]` to `size[j]`,
        as a matrix: the same sums in the same order, so the same verdicts, without building
        the moves that would be refused."""
        moved = (size - self.x[owner]) * self.unit[owner]
        cost, before = self.trade_cost(owner, size), self.cost[owner]
        first = moved + (cost - before)  # as the first of a move
        second = moved + cost - before  # as the second
        changed = (size != 0).astype(np.intp) - (self.x[owner] != 0)
        trades = int(np.count_nonzero(self.x)) + changed[:, None] + changed[None, :]
        ok: BoolArray = (self.cash - (first[:, None] + second[None, :]) >= 0) & (
            trades <= max_depth
        )
        return ok

    def score(self, moves: Moves) -> Scored:
        """Each move's score, its cash at the end and its number of trades.

        The second security's terms are added only where a move has one: a batch of
        one-security moves skips them, a batch of pairs needs no mask (adding the zeros
        the mask would give changes no sum).
        """
        a = moves.first
        move_a = (moves.first_q - self.x[a]) * self.unit[a]
        extra = self.trade_cost(a, moves.first_q) - self.cost[a]
        trades = int(np.count_nonzero(self.x)) + (moves.first_q != 0) - (self.x[a] != 0)
        invested0, squares0, quality0, costs0 = self.sums
        va = self.value[a]
        squares = squares0 + (va + move_a) ** 2 - va**2
        quality = quality0 + self.quality[a] * move_a
        cash = self.cash - move_a
        invested = invested0 + move_a
        second = _Second.of(self, moves)
        if second is not None:
            extra += second.extra
            trades = trades + second.trades
            squares += second.squares
            quality = quality + second.quality
            cash -= second.move
            invested += second.move
        costs = costs0 + extra
        total = self.total0 - costs
        cash -= extra
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.where(total > 0, 1.0 / total, 0.0)
            allocation = self._allocation(a, move_a, second, total, inverse)
            live = invested > INVESTED_EPSILON * np.maximum(total, 0.0)
            safe = np.where(live, invested, 1.0)
            diversification = np.where(live, 1.0 - squares / (safe * safe), 0.0)
            mean_quality = np.where(live, quality / safe, 0.0)
        w_a, w_d, w_q, k = self.weights
        score = (w_a * allocation + w_d * diversification + w_q * mean_quality) / (w_a + w_d + w_q)
        if self.total0 > 0:
            score = score - costs / self.total0 * k
        return score, cash, trades

    def _allocation(
        self,
        a: IntArray,
        move_a: FloatArray,
        second: _Second | None,
        total: FloatArray,
        inverse: FloatArray,
    ) -> FloatArray:
        if not self.sets:
            return np.ones(len(a))
        groups = self.groups
        group_a = groups.index[:, a]  # (sets, moves)
        before_a = groups.current[group_a]
        aim_a = groups.targets[group_a] * total
        step_a = np.abs(before_a + move_a - aim_a) - np.abs(before_a - aim_a)
        change = np.where(groups.hit[:, a], step_a, 0.0)
        if second is not None:
            b = second.index
            group_b = groups.index[:, b]
            before_b = groups.current[group_b] + np.where(group_b == group_a, move_a, 0.0)
            aim_b = groups.targets[group_b] * total
            step_b = np.abs(before_b + second.move - aim_b) - np.abs(before_b - aim_b)
            hit_b = groups.hit[:, b] if second.mask is None else groups.hit[:, b] & second.mask
            change += np.where(hit_b, step_b, 0.0)
        fit = np.zeros(len(a))
        for row, target_set in zip(change, self.sets, strict=True):
            fit += 1.0 - 0.5 * (target_set.distance(inverse) + row * inverse)
        result: FloatArray = fit / len(self.sets)
        return result

    @classmethod
    def at(
        cls,
        x: FloatArray,
        *,
        unit: FloatArray,
        quality: FloatArray,
        held_value: FloatArray,
        cash: float,
        costs: tuple[float, float],
        sets: tuple[TargetSet, ...],
        weights: tuple[float, float, float, float],
    ) -> State:
        """The state at quantities `x` of a portfolio holding `held_value` and `cash`, whose
        target `sets` are regrouped at the values `x` leads to."""
        fixed, percent = costs
        moved = x * unit
        cost = trade_costs(x, moved, fixed, percent)
        value = held_value + moved
        total0 = float(held_value.sum()) + cash
        target_sets = tuple(target_set.revalued(value) for target_set in sets)
        return cls(
            x=x,
            unit=unit,
            quality=quality,
            fixed=fixed,
            percent=percent,
            value=value,
            cost=cost,
            cash=cash - float(moved.sum()) - float(cost.sum()),
            total0=total0,
            sums=(
                float(value.sum()),
                float((value * value).sum()),
                float((quality * value).sum()),
                float(cost.sum()),
            ),
            sets=target_sets,
            groups=Groups.of(target_sets),
            weights=weights,
        )


@dataclass(frozen=True, slots=True)
class _Second:
    """The terms a move's second security adds (zero where a move has none)."""

    index: IntArray  # the second security, 0 where there is none
    mask: BoolArray | None  # where there is one; None when every move has one
    move: FloatArray
    extra: FloatArray
    trades: IntArray
    squares: FloatArray
    quality: FloatArray

    @classmethod
    def of(cls, state: State, moves: Moves) -> _Second | None:
        b = moves.second
        if not len(b) or int(b.max()) < 0:
            return None
        mask: BoolArray | None = None
        if int(b.min()) < 0:
            mask = b >= 0
            b = np.where(mask, b, 0)
        move = (moves.second_q - state.x[b]) * state.unit[b]
        extra = state.trade_cost(b, moves.second_q) - state.cost[b]
        trades = (moves.second_q != 0).astype(np.intp) - (state.x[b] != 0)
        vb = state.value[b]
        squares = (vb + move) ** 2 - vb**2
        if mask is not None:
            move, extra, squares = (np.where(mask, term, 0.0) for term in (move, extra, squares))
            trades = trades * mask
        return cls(b, mask, move, extra, trades, squares, state.quality[b] * move)
