"""A context as arrays: the `PortfolioModel`, its per-action table and its cache.

The context is turned once into a `PortfolioModel` (cached by digest), and each distinct
`Action` object once into a row of per-action numbers: a step touches one security, so the
end state differs from the current one in at most depth positions, and every sum the score
needs changes by a per-action delta (see `planforge.portfolio.evaluation`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from planforge.holistic.modules import Action
from planforge.portfolio._address import AddressIndex
from planforge.portfolio._arrays import BoolArray, FloatArray, IntArray
from planforge.portfolio._rules import action_problem
from planforge.portfolio._settings import PortfolioSettings
from planforge.portfolio._targets import TargetSet, build_target_set
from planforge.portfolio.context import PortfolioContext

__all__ = [
    "COST",
    "DS2",
    "DSQ",
    "DV",
    "FLOW",
    "LINEAR_COLUMNS",
    "NOOP",
    "ActionRecord",
    "ActionTable",
    "PortfolioModel",
    "model_for",
]

_MODEL_CACHE_SIZE = 8
#: Distinct actions remembered per model; past this the table starts afresh.
_ACTION_TABLE_LIMIT = 50_000
_OK_CACHE_SIZE = 4
_SET_NAMES = ("by_security", "by_country", "by_industry")

# columns of the per-action linear table
FLOW, COST, DV, DS2, DSQ = range(5)
LINEAR_COLUMNS = 5


@dataclass(slots=True)
class ActionTable:
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
    #: The row of each action's id: a batch is encoded with array lookups instead of a
    #: dictionary lookup per step.
    addresses: AddressIndex = field(default_factory=lambda: AddressIndex.build({}))


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
    _table: ActionTable | None = None
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
            sets.append(build_target_set(name, targets, labels, value))
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

    @property
    def table(self) -> ActionTable | None:
        """The newest action table (None before the first batch); tables are never changed."""
        return self._table

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

    def table_for(self, actions: Sequence[Action]) -> ActionTable:
        """A table that knows every action in `actions` (grown or renewed when needed)."""
        table = self._table
        if table is not None and all(id(action) in table.index for action in actions):
            return table
        return self._grow(dict(zip(map(id, actions), actions, strict=True)))

    def _grow(self, seen: Mapping[int, Action]) -> ActionTable:
        with self._lock:
            table = self._table
            fresh = [a for key, a in seen.items() if table is None or key not in table.index]
            if table is None or len(table.actions) + len(fresh) > _ACTION_TABLE_LIMIT:
                table = self._make_table([NOOP])
                fresh = list(seen.values())
            if fresh:
                table = self._extend(table, fresh)
            self._table = table
            return table

    def _make_table(self, actions: list[Action]) -> ActionTable:
        empty_sets = tuple(np.zeros(0, dtype=np.intp) for _ in self.target_sets)
        empty_rows = tuple(np.zeros((3, 0)) for _ in self.target_sets)
        table = ActionTable(
            actions=[],
            index={},
            sec=np.zeros(0, dtype=np.intp),
            bits=np.zeros(0, dtype=np.uint64),
            linear=np.zeros((0, LINEAR_COLUMNS)),
            set_group=empty_sets,
            set_rows=empty_rows,
        )
        return self._extend(table, actions)

    def _extend(self, table: ActionTable, fresh: list[Action]) -> ActionTable:
        start = len(table.actions)
        sec = np.full(len(fresh), -1, dtype=np.intp)
        linear = np.zeros((len(fresh), LINEAR_COLUMNS))
        groups = [np.full(len(fresh), -1, dtype=np.intp) for _ in self.target_sets]
        rows = [np.zeros((len(fresh), 3)) for _ in self.target_sets]
        for row, action in enumerate(fresh):
            if action is NOOP:
                continue
            record = self.record(action)
            if record.security < 0 or record.sign == 0:
                continue
            i = record.security
            sec[row] = i
            dv = record.sign * record.value
            held = float(self.value[i])
            linear[row, FLOW] = -dv - record.cost
            linear[row, COST] = record.cost
            linear[row, DV] = dv
            linear[row, DS2] = (held + dv) * (held + dv) - held * held
            linear[row, DSQ] = float(self.quality[i]) * dv
            for k, target_set in enumerate(self.target_sets):
                g = int(target_set.group_of[i])
                groups[k][row] = g
                if g >= 0:
                    rows[k][row] = (dv, target_set.current[g], target_set.targets[g])
        index = dict(table.index)
        for row, action in enumerate(fresh):
            index[id(action)] = start + row
        # the rules of the rows already known carry over: only the fresh rows are checked
        return ActionTable(
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
            ok_cache=OrderedDict(table.ok_cache),
            addresses=AddressIndex.build(index),
        )

    def ok_for(self, table: ActionTable, settings: PortfolioSettings) -> BoolArray:
        """Per table action: may it execute under `settings`? Cached per settings; a grown
        table checks only the rows its parent did not have."""
        key = settings.model_dump_json()
        with self._lock:
            known = table.ok_cache.get(key)
            if known is not None:
                table.ok_cache.move_to_end(key)
                if len(known) == len(table.actions):
                    return known
        done = 0 if known is None else len(known)
        fresh = np.array(
            [a is NOOP or action_problem(self, settings, a) is None for a in table.actions[done:]],
            dtype=np.bool_,
        )
        ok = fresh if known is None else np.concatenate((known, fresh))
        with self._lock:
            table.ok_cache[key] = ok
            while len(table.ok_cache) > _OK_CACHE_SIZE:
                table.ok_cache.popitem(last=False)
        return ok


#: The padding step of shorter sequences: row 0 of every table, changes nothing.
NOOP = Action(side="", key="", quantity=0.0, price=0.0, value=0.0, priority=0.0, category="")


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


# The model cache: bounded, by context digest, with the last context remembered by identity
# (one plan asks for the model of the same context object many times).
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
