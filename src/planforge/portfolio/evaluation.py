"""Vectorised simulation and scoring of portfolio trade sequences.

One score function rates the current portfolio and every end state, so `improvement`
always compares like with like.

The score
---------
With v_i the value of security i in the base currency (quantity x current price x FX rate),
c the cash, V = sum(v_i) the invested value and T = V + c the total value:

    fit_S = 1 - 0.5 * sum_{g in S} |W_g - t_g|,  W_g = sum_{i in g} v_i / T
                      for each non-empty target set S (by_security, by_country, by_industry);
                      a group without a target is not counted (neutral)
    A     = mean of fit_S over the non-empty target sets (1.0 when there are none)
    D     = 1 - sum_i (v_i / V)^2     (1 - Herfindahl index of the invested positions)
    Q     = sum_i q_i * v_i / V       (value-weighted mean of Security.quality)
    score = (w_A * A + w_D * D + w_Q * Q) / (w_A + w_D + w_Q)  -  k * C / T_0

where w_A, w_D, w_Q are `allocation_weight`, `diversification_weight` and `quality_weight`,
k is `cost_penalty_factor`, C the sequence's total transaction costs and T_0 the total value
before trading (the penalty is 0 when T_0 is 0). D and Q are 0 when less than 1e-9 of the
total value is invested. Every A, D, Q lies in [0, 1].

The simulation
--------------
Steps execute in order at the price the context gives: a held symbol at its position's
`current_price` (in the position's currency), another at its security's `price`, and only
when the context has neither at the action's own price. The value in the base currency is
quantity x price x FX rate and the cost is `costs.fixed + costs.percent * value`. A sell adds
`value - cost` to the cash, a buy takes `value + cost`. A sequence is infeasible (score
-inf, nothing skipped silently) when the cash would go below zero after any step, it sells
more than is held, it names a symbol twice, or a step breaks a rule (unknown symbol or side,
no price or FX rate, buying or selling not allowed, an ineligible symbol, a trade below the
minimum value, a sell before the minimum holding period or within the sell cooldown or at a
loss beyond `max_loss`, a buy within the buy cooldown). The empty sequence is the current
state.

How it is fast: the context is turned once into a `PortfolioModel` (cached by digest), each
distinct `Action` object once into a row of per-action numbers (a step touches one security,
so the end state differs from the current one in at most depth positions, and every sum the
score needs changes by a per-action delta), and a batch of sequences into a depth x batch
matrix of action rows. The allocation terms of untouched groups depend on the sequence only
through 1/T, a convex piecewise-linear function evaluated with one binary search; the
touched groups are corrected step by step. Batches run in chunks of
`evaluation_chunk_size` sequences to bound memory.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio.context import PortfolioContext

__all__ = [
    "ActionRecord",
    "PortfolioModel",
    "PortfolioSettings",
    "ScoreDetail",
    "action_problem",
    "evaluate_sequences",
    "model_for",
    "score_detail",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: Invested value below this share of the total counts as nothing invested.
INVESTED_EPSILON = 1e-9
_MODEL_CACHE_SIZE = 8
#: Distinct actions remembered per model; past this the table starts afresh.
_ACTION_TABLE_LIMIT = 50_000
_OK_CACHE_SIZE = 4
_TINY = float(np.finfo(np.float64).tiny)
_SET_NAMES = ("by_security", "by_country", "by_industry")

# columns of the per-action linear table
_FLOW, _COST, _DV, _DS2, _DSQ = range(5)
_LINEAR_COLUMNS = 5


class PortfolioSettings(BaseModel):
    """The portfolio domain's `[planner]` keys: scoring weights, costs and trading rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_penalty_factor: float = Field(
        default=1.0,
        ge=0.0,
        le=1000.0,
        description="Weight of transaction costs in the score: k in score - k * costs / value.",
    )
    allocation_weight: float = Field(
        default=0.5, ge=0.0, le=100.0, description="Weight of the allocation fit to targets."
    )
    diversification_weight: float = Field(
        default=0.3, ge=0.0, le=100.0, description="Weight of diversification (1 - HHI)."
    )
    quality_weight: float = Field(
        default=0.2, ge=0.0, le=100.0, description="Weight of the value-weighted quality."
    )
    min_hold_days: int = Field(
        default=90, ge=0, le=36_500, description="A position is sold only after this many days."
    )
    sell_cooldown_days: int = Field(
        default=180, ge=0, le=36_500, description="No sell of a symbol sold within this many days."
    )
    buy_cooldown_days: int = Field(
        default=30, ge=0, le=36_500, description="No buy of a symbol bought within this many days."
    )
    max_loss: float = Field(
        default=-0.20,
        ge=-1.0,
        le=0.0,
        description="No sell of a position whose loss on the average price is worse than this.",
    )
    allow_buy: bool = Field(
        default=True, description="Buys are allowed (and the context's restriction too)."
    )
    allow_sell: bool = Field(
        default=True, description="Sells are allowed (and the context's restriction too)."
    )
    min_trade_value: float | None = Field(
        default=None,
        ge=0.0,
        description="Smallest trade in the base currency; unset uses the context's.",
    )
    evaluation_chunk_size: int = Field(
        default=16_384,
        ge=1,
        le=1_000_000,
        description="Sequences scored per vectorised chunk (bounds memory).",
    )

    @model_validator(mode="after")
    def _check_weights(self) -> PortfolioSettings:
        if self.allocation_weight + self.diversification_weight + self.quality_weight <= 0:
            raise ValueError("allocation, diversification and quality weights cannot all be 0")
        return self


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class TargetSet:
    """One non-empty target set, with what its allocation term needs precomputed."""

    name: str
    groups: tuple[str, ...]
    targets: FloatArray
    #: Held value per group before trading.
    current: FloatArray
    #: Per security: its group's index, or -1 when its group has no target.
    group_of: IntArray
    #: Can two different securities of one sequence fall in the same group?
    shared: bool
    # sum_g |current_g * x - t_g| = slopes[k] * x + intercepts[k], k = #breakpoints <= x
    breakpoints: FloatArray
    slopes: FloatArray
    intercepts: FloatArray

    def distance(self, x: FloatArray) -> FloatArray:
        """sum_g |W_g - t_g| with every group at its current value and x = 1 / T."""
        k = np.searchsorted(self.breakpoints, x, side="right")
        result: FloatArray = self.slopes[k] * x + self.intercepts[k]
        return result


def _target_set(
    name: str, targets: Mapping[str, float], labels: Sequence[str], values: FloatArray
) -> TargetSet:
    groups = tuple(sorted(targets))
    position = {group: index for index, group in enumerate(groups)}
    group_of = np.array([position.get(label, -1) for label in labels], dtype=np.intp)
    current = np.zeros(len(groups), dtype=np.float64)
    for index, group in enumerate(group_of.tolist()):
        if group >= 0:
            current[group] += values[index]
    wanted = np.array([targets[group] for group in groups], dtype=np.float64)
    live = current > 0
    constant = float(wanted[~live].sum())
    order = np.argsort(wanted[live] / current[live], kind="stable")
    breakpoints = (wanted[live] / current[live])[order]
    held, aims = current[live][order], wanted[live][order]
    above_v = np.concatenate(([0.0], np.cumsum(held)))
    above_t = np.concatenate(([0.0], np.cumsum(aims)))
    slopes = above_v - (above_v[-1] - above_v)
    intercepts = -above_t + (above_t[-1] - above_t) + constant
    return TargetSet(
        name=name,
        groups=groups,
        targets=wanted,
        current=current,
        group_of=group_of,
        shared=name != "by_security",
        breakpoints=breakpoints,
        slopes=slopes,
        intercepts=intercepts,
    )


@dataclass(slots=True)
class _ActionTable:
    """Distinct `Action` objects seen with one model, keyed by identity, with their numbers.

    It holds the actions themselves, so an id cannot be reused while it is in the table.
    Tables are never changed in place: growing one makes a new table (safe across threads).
    """

    actions: list[Action]
    index: dict[int, int]
    sec: IntArray
    #: 1 << (security % 64), 0 for the no-op: a cheap first test for repeated symbols.
    bits: npt.NDArray[np.uint64]
    linear: FloatArray  # (actions, 5): flow, cost, dv, d(sum v^2), d(sum q v)
    #: Per target set: the group index of each action's security (-1 untargeted).
    set_group: tuple[IntArray, ...]
    #: Per target set, (3, actions): value moved into a targeted group, the group's value
    #: before trading and its target (all 0 when untargeted).
    set_rows: tuple[FloatArray, ...]
    ok_cache: OrderedDict[str, BoolArray] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """How one action executes against a model (settings-independent)."""

    security: int
    sign: int
    quantity: float
    price: float
    currency: str
    value: float
    cost: float
    problem: str | None


@dataclass(slots=True)
class PortfolioModel:
    """Everything evaluation needs from a context, as arrays, computed once per context."""

    context: PortfolioContext
    digest: str
    symbols: tuple[str, ...]
    position: dict[str, int]
    price: FloatArray  # market price in `currencies[i]`, nan when unknown
    currencies: tuple[str, ...]
    fx: FloatArray  # base per unit of `currencies[i]`, nan when unknown
    quantity: FloatArray  # held
    value: FloatArray  # held value in base
    quality: FloatArray
    cash: float
    invested: float
    total: float
    sum_sq: float
    sum_quality: float
    target_sets: tuple[TargetSet, ...]
    _table: _ActionTable | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, context: PortfolioContext, digest: str | None = None) -> PortfolioModel:
        symbols = tuple(security.symbol for security in context.securities)
        position = {symbol: index for index, symbol in enumerate(symbols)}
        held = {p.symbol: p for p in context.positions}
        n = len(symbols)
        price = np.full(n, np.nan)
        fx = np.full(n, np.nan)
        quantity = np.zeros(n)
        currencies: list[str] = []
        for index, security in enumerate(context.securities):
            pos = held.get(security.symbol)
            if pos is not None:
                price[index], currency = pos.current_price, pos.currency
                quantity[index] = pos.quantity
            else:
                currency = security.currency
                if security.price is not None:
                    price[index] = security.price
            currencies.append(currency)
            rate = _rate(context, currency)
            fx[index] = rate if rate is not None else np.nan
        value = np.array(
            [quantity[i] * price[i] * fx[i] if quantity[i] > 0 else 0.0 for i in range(n)],
            dtype=np.float64,
        )
        quality = np.array([s.quality for s in context.securities], dtype=np.float64)
        invested = math.fsum(value.tolist())
        total = invested + context.cash
        sets: list[TargetSet] = []
        for name in _SET_NAMES:
            targets: Mapping[str, float] = getattr(context.targets, name)
            if not targets:
                continue
            if name == "by_security":
                labels: Sequence[str] = symbols
            elif name == "by_country":
                labels = [s.country for s in context.securities]
            else:
                labels = [s.industry for s in context.securities]
            sets.append(_target_set(name, targets, labels, value))
        return cls(
            context=context,
            digest=digest if digest is not None else context.digest(),
            symbols=symbols,
            position=position,
            price=price,
            currencies=tuple(currencies),
            fx=fx,
            quantity=quantity,
            value=value,
            quality=quality,
            cash=context.cash,
            invested=invested,
            total=total,
            sum_sq=math.fsum((value * value).tolist()),
            sum_quality=math.fsum((quality * value).tolist()),
            target_sets=tuple(sets),
        )

    # ----------------------------------------------------------------- actions

    def record(self, action: Action) -> ActionRecord:
        """How `action` would execute: security, sign, price, base value, cost, or a problem."""
        context = self.context
        sign = {"sell": -1, "buy": 1}.get(action.side, 0)
        index = self.position.get(action.key, -1)
        base = ActionRecord(index, sign, action.quantity, 0.0, "", 0.0, 0.0, None)
        if sign == 0:
            return _with_problem(base, f"unknown side {action.side!r} (use 'sell' or 'buy')")
        if index < 0:
            return _with_problem(base, f"{action.key} is not among the context's securities")
        quantity = action.quantity
        if not (math.isfinite(quantity) and quantity > 0):
            return _with_problem(base, f"quantity {quantity} is not a positive number")
        price = float(self.price[index])
        currency = self.currencies[index]
        rate: float | None = float(self.fx[index])
        if math.isnan(price):
            price = action.price
            currency = action.currency or currency
            rate = _rate(context, currency)
            if not (math.isfinite(price) and price > 0):
                return _with_problem(base, f"{action.key} has no price in the context")
        if rate is None or math.isnan(rate):
            return _with_problem(
                base, f"no FX rate from {currency} to {context.base_currency} for {action.key}"
            )
        value = quantity * price * rate
        cost = context.costs.fixed + context.costs.percent * value
        problem = None
        if sign < 0 and quantity > self.quantity[index]:
            held = float(self.quantity[index])
            problem = f"sells {_qty(quantity)} {action.key} but holds {_qty(held)}"
        return ActionRecord(index, sign, quantity, price, currency, value, cost, problem)

    def table_for(self, actions: Sequence[Action]) -> _ActionTable:
        """A table that knows every action in `actions` (grown or renewed when needed)."""
        table = self._table
        if table is not None and all(id(action) in table.index for action in actions):
            return table
        return self._grow(dict(zip(map(id, actions), actions, strict=True)))

    def _grow(self, seen: Mapping[int, Action]) -> _ActionTable:
        with self._lock:
            table = self._table
            fresh = [a for key, a in seen.items() if table is None or key not in table.index]
            if table is None or len(table.actions) + len(fresh) > _ACTION_TABLE_LIMIT:
                table = self._make_table([_NOOP])
                fresh = list(seen.values())
            if fresh:
                table = self._extend(table, fresh)
            self._table = table
            return table

    def _make_table(self, actions: list[Action]) -> _ActionTable:
        empty_sets = tuple(np.zeros(0, dtype=np.intp) for _ in self.target_sets)
        empty_rows = tuple(np.zeros((3, 0)) for _ in self.target_sets)
        table = _ActionTable(
            actions=[],
            index={},
            sec=np.zeros(0, dtype=np.intp),
            bits=np.zeros(0, dtype=np.uint64),
            linear=np.zeros((0, _LINEAR_COLUMNS)),
            set_group=empty_sets,
            set_rows=empty_rows,
        )
        return self._extend(table, actions)

    def _extend(self, table: _ActionTable, fresh: list[Action]) -> _ActionTable:
        start = len(table.actions)
        sec = np.full(len(fresh), -1, dtype=np.intp)
        linear = np.zeros((len(fresh), _LINEAR_COLUMNS))
        groups = [np.full(len(fresh), -1, dtype=np.intp) for _ in self.target_sets]
        rows = [np.zeros((len(fresh), 3)) for _ in self.target_sets]
        for row, action in enumerate(fresh):
            if action is _NOOP:
                continue
            record = self.record(action)
            if record.security < 0 or record.sign == 0:
                continue
            i = record.security
            sec[row] = i
            dv = record.sign * record.value
            held = float(self.value[i])
            linear[row, _FLOW] = -dv - record.cost
            linear[row, _COST] = record.cost
            linear[row, _DV] = dv
            linear[row, _DS2] = (held + dv) * (held + dv) - held * held
            linear[row, _DSQ] = float(self.quality[i]) * dv
            for k, target_set in enumerate(self.target_sets):
                g = int(target_set.group_of[i])
                groups[k][row] = g
                if g >= 0:
                    rows[k][row] = (dv, target_set.current[g], target_set.targets[g])
        index = dict(table.index)
        for row, action in enumerate(fresh):
            index[id(action)] = start + row
        return _ActionTable(
            actions=[*table.actions, *fresh],
            index=index,
            sec=np.concatenate((table.sec, sec)),
            bits=np.concatenate(
                (table.bits, np.where(sec >= 0, np.left_shift(1, sec % 64), 0).astype(np.uint64))
            ),
            linear=np.concatenate((table.linear, linear)),
            set_group=tuple(
                np.concatenate((old, new)) for old, new in zip(table.set_group, groups, strict=True)
            ),
            set_rows=tuple(
                np.concatenate((old, new.T), axis=1)
                for old, new in zip(table.set_rows, rows, strict=True)
            ),
        )

    def ok_for(self, table: _ActionTable, settings: PortfolioSettings) -> BoolArray:
        """Per table action: may it execute under `settings`? (cached per settings)."""
        key = settings.model_dump_json()
        with self._lock:
            ok = table.ok_cache.get(key)
            if ok is not None:
                table.ok_cache.move_to_end(key)
                return ok
        ok = np.array(
            [a is _NOOP or action_problem(self, settings, a) is None for a in table.actions],
            dtype=np.bool_,
        )
        with self._lock:
            table.ok_cache[key] = ok
            while len(table.ok_cache) > _OK_CACHE_SIZE:
                table.ok_cache.popitem(last=False)
        return ok


#: The padding step of shorter sequences: row 0 of every table, changes nothing.
_NOOP = Action(side="", key="", quantity=0.0, price=0.0, value=0.0, priority=0.0, category="")


def _rate(context: PortfolioContext, currency: str) -> float | None:
    if currency == context.base_currency:
        return 1.0
    rate = context.fx_rates.get(currency)
    return rate if rate is not None and rate > 0 else None


def _with_problem(record: ActionRecord, problem: str) -> ActionRecord:
    return ActionRecord(
        record.security,
        record.sign,
        record.quantity,
        record.price,
        record.currency,
        record.value,
        record.cost,
        problem,
    )


def _qty(quantity: float) -> str:
    return f"{quantity:,.0f}" if float(quantity).is_integer() else f"{quantity:,.4f}".rstrip("0")


def action_problem(
    model: PortfolioModel, settings: PortfolioSettings, action: Action
) -> str | None:
    """Why `action` may not execute in this context under these settings (None: it may)."""
    record = model.record(action)
    if record.problem is not None:
        return record.problem
    context = model.context
    restrictions = context.restrictions
    symbol = action.key
    if symbol in restrictions.ineligible:
        return f"{symbol} is ineligible for trading"
    minimum = settings.min_trade_value
    minimum = context.min_trade_value if minimum is None else minimum
    if record.value < minimum:
        return (
            f"trade value {record.value:,.2f} {context.base_currency} is below the minimum "
            f"{minimum:,.2f}"
        )
    if record.sign < 0:
        if not (settings.allow_sell and restrictions.allow_sell):
            return "selling is not allowed"
        held = next(p for p in context.positions if p.symbol == symbol)
        if held.first_bought is not None:
            days = (context.as_of - held.first_bought).days
            if days < settings.min_hold_days:
                return f"{symbol} held {days} days, less than the minimum {settings.min_hold_days}"
        sold = restrictions.recent_sells.get(symbol)
        if sold is not None and (context.as_of - sold).days < settings.sell_cooldown_days:
            days = (context.as_of - sold).days
            return f"{symbol} sold {days} days ago (sell cooldown {settings.sell_cooldown_days})"
        if held.average_price > 0:
            change = held.current_price / held.average_price - 1.0
            if change < settings.max_loss:
                return (
                    f"{symbol} is at a {change * 100:.1f}% loss, beyond the maximum loss "
                    f"{settings.max_loss * 100:.1f}%"
                )
    else:
        if not (settings.allow_buy and restrictions.allow_buy):
            return "buying is not allowed"
        bought = restrictions.recent_buys.get(symbol)
        if bought is not None and (context.as_of - bought).days < settings.buy_cooldown_days:
            days = (context.as_of - bought).days
            return f"{symbol} bought {days} days ago (buy cooldown {settings.buy_cooldown_days})"
    return None


# --------------------------------------------------------------------------- model cache

_models: OrderedDict[str, PortfolioModel] = OrderedDict()
_models_lock = threading.Lock()
_last: list[tuple[PortfolioContext, PortfolioModel]] = []


def model_for(context: PortfolioContext) -> PortfolioModel:
    """The model of `context`, built once and cached by digest (bounded)."""
    last = _last[0] if _last else None
    if last is not None and last[0] is context:
        return last[1]
    digest = context.digest()
    with _models_lock:
        model = _models.get(digest)
        if model is not None:
            _models.move_to_end(digest)
    if model is None:
        model = PortfolioModel.build(context, digest)
        with _models_lock:
            model = _models.setdefault(digest, model)
            while len(_models) > _MODEL_CACHE_SIZE:
                _models.popitem(last=False)
    _last[:] = [(context, model)]
    return model


# --------------------------------------------------------------------------- the kernel


@dataclass(frozen=True, slots=True)
class ScoreDetail:
    """Per-sequence score components of one batch (all aligned with the batch)."""

    scores: FloatArray
    feasible: BoolArray
    costs: FloatArray
    allocation_fit: FloatArray
    diversification: FloatArray
    quality: FloatArray
    cost_penalty: FloatArray
    set_fits: Mapping[str, FloatArray]
    cash_after: FloatArray
    total_value: FloatArray
    invested: FloatArray
    #: Cash after each step (steps x batch); row 0 is the cash before trading.
    cash_path: FloatArray


def _encode(table: _ActionTable, sequences: Sequence[ActionSequence]) -> IntArray:
    """Steps x batch matrix of table rows; 0 (no-op) pads shorter sequences."""
    count = len(sequences)
    lengths = np.fromiter(map(len, sequences), dtype=np.intp, count=count)
    total = int(lengths.sum())
    depth = int(lengths.max()) if count else 0
    rows = map(table.index.__getitem__, map(id, chain.from_iterable(sequences)))
    if len(table.actions) <= 256:  # one byte a step: the fastest way out of Python
        flat = np.frombuffer(bytes(rows), dtype=np.uint8).astype(np.intp)
    else:
        flat = np.fromiter(rows, dtype=np.intp, count=total)
    if total == depth * count:
        return np.ascontiguousarray(flat.reshape(count, depth).T)
    codes = np.zeros((count, depth), dtype=np.intp)
    codes[np.arange(depth)[None, :] < lengths[:, None]] = flat
    return np.ascontiguousarray(codes.T)


def _repeats(table: _ActionTable, codes: IntArray, model: PortfolioModel) -> BoolArray:
    """Rows that name a security twice: a bit mask first, exact pairs only where it may clash."""
    depth, count = codes.shape
    seen = np.zeros(count, dtype=np.uint64)
    clash = np.zeros(count, dtype=np.bool_)
    for d in range(depth):
        bits = np.take(table.bits, codes[d])
        clash |= (seen & bits) != 0
        seen |= bits
    if len(model.symbols) <= 64 or not clash.any():
        return clash
    rows = np.flatnonzero(clash)
    secs = [np.take(table.sec, codes[d, rows]) for d in range(depth)]
    exact = np.zeros(len(rows), dtype=np.bool_)
    for later in range(1, depth):
        for earlier in range(later):
            exact |= (secs[earlier] == secs[later]) & (secs[later] >= 0)
    clash[rows] = exact
    return clash


def _allocation_distance(
    target_set: TargetSet,
    rows: FloatArray,
    group_of: IntArray,
    codes: IntArray,
    total: FloatArray,
    x: FloatArray,
) -> FloatArray:
    """sum_g |W_g - t_g| at the end state, for every row.

    Untouched groups: the set's piecewise-linear function of x = 1 / T. Each step then
    replaces its group's term, |c x - t| -> |(c + m) x - t| = x |c + m - t T|, where c is
    the group's value before this step (earlier steps in the same group included).
    """
    depth, count = codes.shape
    move_of, start_of, aim_of = rows[0], rows[1], rows[2]
    change = np.zeros(count)
    groups: list[IntArray] = []
    moves: list[FloatArray] = []
    same = np.empty(count, dtype=np.bool_)
    scratch = np.empty(count)
    for d in range(depth):
        step = codes[d]
        move = np.take(move_of, step)
        before = np.take(start_of, step)
        if target_set.shared:
            group = np.take(group_of, step)
            for earlier_group, earlier_move in zip(groups, moves, strict=True):
                np.equal(earlier_group, group, out=same)
                np.multiply(earlier_move, same, out=scratch)
                before += scratch
            groups.append(group)
            moves.append(move)
        gap = np.take(aim_of, step)
        gap *= total
        np.subtract(before, gap, out=gap)  # c - t T
        np.add(gap, move, out=scratch)  # c + m - t T
        np.abs(scratch, out=scratch)
        np.abs(gap, out=gap)
        change += scratch
        change -= gap
    change *= x
    change += target_set.distance(x)
    return change


def _score_codes(
    model: PortfolioModel,
    table: _ActionTable,
    ok: BoolArray,
    codes: IntArray,
    settings: PortfolioSettings,
    detail: bool,
) -> ScoreDetail | tuple[FloatArray, BoolArray, FloatArray]:
    depth, count = codes.shape
    feasible = np.ones(count, dtype=np.bool_)
    sums = np.zeros((count, _LINEAR_COLUMNS))
    sums[:, _FLOW] = model.cash
    path = [sums[:, _FLOW].copy()] if detail else []
    for d in range(depth):
        step = codes[d]
        feasible &= np.take(ok, step)
        sums += np.take(table.linear, step, axis=0)
        cash = sums[:, _FLOW]
        feasible &= cash >= 0.0
        if detail:
            path.append(cash.copy())
    if depth > 1:
        feasible &= ~_repeats(table, codes, model)

    costs = np.ascontiguousarray(sums[:, _COST])
    total = model.total - costs
    invested = model.invested + sums[:, _DV]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # below the smallest normal float 1 / T would overflow: such a portfolio is empty
        x = np.where(total >= _TINY, 1.0 / total, 0.0)
        live = invested > INVESTED_EPSILON * np.maximum(total, 0.0)
        safe = np.where(live, invested, 1.0)
        diversification = np.where(live, 1.0 - (model.sum_sq + sums[:, _DS2]) / (safe * safe), 0.0)
        quality = np.where(live, (model.sum_quality + sums[:, _DSQ]) / safe, 0.0)

    set_fits: dict[str, FloatArray] = {}
    allocation = np.zeros(count)
    for k, target_set in enumerate(model.target_sets):
        distance = _allocation_distance(
            target_set, table.set_rows[k], table.set_group[k], codes, total, x
        )
        fit = 1.0 - 0.5 * distance
        set_fits[target_set.name] = fit
        allocation += fit
    if set_fits:
        allocation /= len(set_fits)
    else:
        allocation += 1.0

    weight_sum = settings.allocation_weight + settings.diversification_weight
    weight_sum += settings.quality_weight
    if model.total > 0:
        with np.errstate(over="ignore"):
            penalty = costs / model.total * settings.cost_penalty_factor
    else:
        penalty = np.zeros(count)
    scores = (
        settings.allocation_weight * allocation
        + settings.diversification_weight * diversification
        + settings.quality_weight * quality
    ) / weight_sum - penalty
    scores[~feasible] = -np.inf
    if not detail:
        return scores, feasible, costs
    return ScoreDetail(
        scores=scores,
        feasible=feasible,
        costs=costs,
        allocation_fit=allocation,
        diversification=diversification,
        quality=quality,
        cost_penalty=penalty,
        set_fits=set_fits,
        cash_after=np.ascontiguousarray(sums[:, _FLOW]),
        total_value=total,
        invested=invested,
        cash_path=np.vstack(path),
    )


def evaluate_sequences(
    model: PortfolioModel, sequences: Sequence[ActionSequence], settings: PortfolioSettings
) -> tuple[FloatArray, BoolArray, FloatArray]:
    """Scores, feasibility and costs of every sequence, in chunks of the configured size."""
    count = len(sequences)
    scores = np.empty(count)
    feasible = np.empty(count, dtype=np.bool_)
    costs = np.empty(count)
    chunk = settings.evaluation_chunk_size
    for start in range(0, count, chunk):
        part = sequences[start : start + chunk]
        table = model._table
        try:
            if table is None:
                raise KeyError
            codes = _encode(table, part)
        except KeyError:
            table = model.table_for(list(chain.from_iterable(part)))
            codes = _encode(table, part)
        ok = model.ok_for(table, settings)
        result = _score_codes(model, table, ok, codes, settings, detail=False)
        assert isinstance(result, tuple)
        end = start + len(part)
        scores[start:end], feasible[start:end], costs[start:end] = result
    return scores, feasible, costs


def score_detail(
    model: PortfolioModel, sequences: Sequence[ActionSequence], settings: PortfolioSettings
) -> ScoreDetail:
    """Scores with every component, for a small batch (simulation, plans, tests)."""
    table = model.table_for(list(chain.from_iterable(sequences)))
    codes = _encode(table, sequences)
    result = _score_codes(model, table, model.ok_for(table, settings), codes, settings, True)
    assert isinstance(result, ScoreDetail)
    return result
