"""Helpers shared by the portfolio's built-in modules: prices, weights, sizing, ordering.

One place decides how a symbol is priced, how a value becomes a lot-sized quantity and how
candidates are ordered, so every calculator, pattern, generator and filter agrees on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio.context import PortfolioContext, Position, Security

__all__ = [
    "BUY",
    "SELL",
    "Book",
    "TargetParams",
    "action_order",
    "arrange",
    "coerce_params",
    "make_trade",
    "ranked",
    "saturate",
    "sized",
    "trade_cost",
]

SELL = "sell"
BUY = "buy"

#: Half-saturation point used to turn a weight gap into a priority: a gap of 5 percentage
#: points gives priority 0.5, 15 points give 0.75.
WEIGHT_GAP_HALF = 0.05

P = TypeVar("P", bound=BaseModel)


class TargetParams(BaseModel):
    """Parameters shared by the calculators that compare the portfolio with its targets.

    Kept here rather than beside them so module discovery, which reads every top-level class
    of a module file, only meets module classes there.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tolerance: float = Field(
        default=0.02,
        ge=0.0,
        le=0.5,
        description="Weight gap (fraction of the portfolio) ignored as noise.",
    )
    by_security: bool = Field(default=True, description="Compare with targets by security.")
    by_country: bool = Field(default=True, description="Compare with targets by country.")
    by_industry: bool = Field(default=True, description="Compare with targets by industry.")
    max_actions: int = Field(default=5, ge=1, le=100, description="At most this many candidates.")


def coerce_params(model: type[P], raw: Any) -> P:
    """The engine passes parsed params; tests and callers may pass a mapping or nothing."""
    if isinstance(raw, model):
        return raw
    if raw is None:
        return model()
    if isinstance(raw, BaseModel):
        return model.model_validate(raw.model_dump())
    if isinstance(raw, Mapping):
        return model.model_validate(dict(raw))
    raise TypeError(f"params must be a {model.__qualname__} or a mapping, got {type(raw)!r}")


def saturate(amount: float, half: float) -> float:
    """Map [0, inf) onto [0, 1) smoothly; `half` gives 0.5. Keeps priorities comparable."""
    if amount <= 0:
        return 0.0
    if math.isinf(amount):
        return 1.0
    return amount / (amount + half)


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def trade_cost(context: PortfolioContext, value: float) -> float:
    """Transaction cost of one trade in the base currency: fixed plus a share of the value."""
    return context.costs.fixed + context.costs.percent * value


def action_order(action: Action) -> tuple[float, str, str, str, float, float]:
    """Total, deterministic order: higher priority first, then side, symbol, category, size."""
    return (
        -action.priority,
        action.side,
        action.key,
        action.category,
        action.value,
        action.quantity,
    )


@dataclass(frozen=True, slots=True)
class Book:
    """A read-only view of the context with prices and weights worked out once.

    A held symbol is priced at its position's `current_price` (what the portfolio is valued
    at); an unheld one at its security's `price`, or not at all when that is missing.
    """

    context: PortfolioContext
    positions: Mapping[str, Position]
    securities: Mapping[str, Security]
    total_value: float
    position_values: Mapping[str, float]
    #: Held value by "country" and by "industry", in the base currency.
    groups: Mapping[str, Mapping[str, float]]

    @classmethod
    def of(cls, context: PortfolioContext) -> Book:
        positions = {position.symbol: position for position in context.positions}
        securities = {security.symbol: security for security in context.securities}
        values = {
            position.symbol: position.quantity
            * position.current_price
            * context.fx(position.currency)
            for position in context.positions
        }
        total = context.cash + sum(values[symbol] for symbol in sorted(values))
        groups: dict[str, dict[str, float]] = {"country": {}, "industry": {}}
        for symbol in sorted(values):
            security = securities[symbol]
            for dimension, group in (
                ("country", security.country),
                ("industry", security.industry),
            ):
                bucket = groups[dimension]
                bucket[group] = bucket.get(group, 0.0) + values[symbol]
        return cls(context, positions, securities, total, values, groups)

    def unit_price(self, symbol: str) -> tuple[float, str] | None:
        """(price in its own currency, currency), or None when the symbol cannot be priced."""
        position = self.positions.get(symbol)
        if position is not None:
            return position.current_price, position.currency
        security = self.securities.get(symbol)
        if security is None or security.price is None:
            return None
        return security.price, security.currency

    def eligible(self, symbol: str) -> bool:
        return symbol not in self.context.restrictions.ineligible

    def weight(self, symbol: str) -> float:
        if self.total_value <= 0:
            return 0.0
        return self.position_values.get(symbol, 0.0) / self.total_value

    def group_of(self, symbol: str, dimension: str) -> str:
        security = self.securities[symbol]
        return security.country if dimension == "country" else security.industry

    def group_weight(self, dimension: str, group: str) -> float:
        if self.total_value <= 0:
            return 0.0
        return self.groups[dimension].get(group, 0.0) / self.total_value

    def quality(self, symbol: str) -> float:
        security = self.securities.get(symbol)
        return security.quality if security is not None else 0.0

    def lot(self, symbol: str) -> int:
        security = self.securities.get(symbol)
        return security.lot_size if security is not None else 1

    def held(self, symbol: str) -> float:
        position = self.positions.get(symbol)
        return position.quantity if position is not None else 0.0


def _lot_floor(quantity: float, lot: int) -> float:
    # the small epsilon keeps 9.999999999 (a float artefact of an exact 10) at 10
    return math.floor(quantity / lot + 1e-9) * lot


def _lot_ceil(quantity: float, lot: int) -> float:
    return math.ceil(quantity / lot - 1e-9) * lot


def make_trade(
    book: Book,
    side: str,
    symbol: str,
    *,
    quantity: float | None = None,
    value: float | None = None,
    priority: float,
    category: str,
    reason: str,
    tags: tuple[str, ...] = (),
    rounding: str = "down",
) -> Action | None:
    """A lot-sized trade of `quantity` units or about `value` in the base currency.

    Rounds down (or, with `rounding="up"`, up) to whole lots (a sell of the whole position
    may keep a fractional holding's exact quantity), never sells more than is held, and
    returns None when nothing is left, the symbol cannot be priced or the trade is below the
    context's `min_trade_value`.
    """
    priced = book.unit_price(symbol)
    if priced is None:
        return None
    price, currency = priced
    unit_value = price * book.context.fx(currency)
    if quantity is None:
        if value is None:
            raise ValueError("make_trade needs a quantity or a value")
        quantity = value / unit_value
    if not quantity > 0 or math.isinf(quantity):
        return None
    wanted = quantity
    lot = book.lot(symbol)
    quantity = _lot_ceil(wanted, lot) if rounding == "up" else _lot_floor(wanted, lot)
    if side == SELL:
        held = book.held(symbol)
        if wanted >= held - 1e-9:
            quantity = held
        quantity = min(quantity, held)
    if quantity <= 0:
        return None
    trade_value = quantity * unit_value
    if trade_value < book.context.min_trade_value:
        return None
    security = book.securities.get(symbol)
    return Action(
        side=side,
        key=symbol,
        quantity=quantity,
        price=price,
        value=trade_value,
        priority=clamp01(priority),
        category=category,
        reason=reason,
        currency=currency,
        name=security.name if security is not None else "",
        tags=tags,
    )


def sized(book: Book, side: str, symbol: str, **trade: Any) -> list[Action]:
    """The trade rounded down to whole lots and, when that differs, rounded up: a needed
    trade smaller than one lot would otherwise vanish, and the better of the two sizes is
    the evaluation's choice."""
    out: list[Action] = []
    for rounding in ("down", "up"):
        action = make_trade(book, side, symbol, rounding=rounding, **trade)
        if action is not None and all(a.quantity != action.quantity for a in out):
            out.append(action)
    return out


def top(actions: Iterable[Action], limit: int) -> list[Action]:
    """The `limit` best actions in the canonical order, distinct trades (side and symbol)
    before second sizes of the same trade, so a cut keeps breadth."""
    ordered = sorted(dict.fromkeys(actions), key=action_order)
    rank: dict[tuple[str, str], int] = {}
    ranked: list[tuple[int, int, Action]] = []
    for position, action in enumerate(ordered):
        seen = rank.get(action.identity(), 0)
        rank[action.identity()] = seen + 1
        ranked.append((seen, position, action))
    return [action for _, _, action in sorted(ranked)[:limit]]


def ranked(
    candidates: Mapping[str, Sequence[Action]],
    categories: Sequence[str] = (),
    side: str | None = None,
) -> list[Action]:
    """Candidates of the named categories (all when empty), best first, one per (side, symbol).

    The same sell proposed by two calculators is one step; the higher-priority proposal wins.
    """
    wanted = set(categories)
    pool: list[Action] = []
    for category in sorted(candidates):
        if wanted and category not in wanted:
            continue
        pool.extend(a for a in candidates[category] if side is None or a.side == side)
    seen: set[tuple[str, str]] = set()
    unique: list[Action] = []
    for action in sorted(pool, key=action_order):
        if action.identity() in seen:
            continue
        seen.add(action.identity())
        unique.append(action)
    return unique


def sell_proceeds(context: PortfolioContext, sells: Iterable[Action]) -> float:
    return sum(a.value - trade_cost(context, a.value) for a in sells)


def arrange(
    context: PortfolioContext,
    sells: Sequence[Action],
    buys: Sequence[Action],
    max_buys: int | None = None,
) -> ActionSequence:
    """Sells first, then the buys (in the order given) that the cash after those sells pays.

    A symbol appears at most once. A buy larger than the cash left is cut to what the cash
    pays (whole lots, at least the minimum trade) rather than dropped: the buy to a target
    that the cash cannot reach is still worth making as far as it goes. A buy never goes
    unpaid.
    """
    used: set[str] = set()
    chosen_sells: list[Action] = []
    for action in sells:
        if action.key not in used:
            used.add(action.key)
            chosen_sells.append(action)
    cash = context.cash + sell_proceeds(context, chosen_sells)
    chosen_buys: list[Action] = []
    for action in buys:
        if max_buys is not None and len(chosen_buys) >= max_buys:
            break
        if action.key in used:
            continue
        if action.value + trade_cost(context, action.value) > cash + 1e-9:
            cut = _cut_to_cash(context, action, cash)
            if cut is None:
                continue
            action = cut
        cash -= action.value + trade_cost(context, action.value)
        used.add(action.key)
        chosen_buys.append(action)
    return (*chosen_sells, *chosen_buys)


def _cut_to_cash(context: PortfolioContext, buy: Action, cash: float) -> Action | None:
    """`buy` made as large as `cash` pays for, costs included (None: not even one lot)."""
    value = (cash - context.costs.fixed) / (1.0 + context.costs.percent)
    if value <= 0:
        return None
    return make_trade(
        Book.of(context),
        buy.side,
        buy.key,
        value=min(value, buy.value),
        priority=buy.priority,
        category=buy.category,
        reason=f"{buy.reason}; cut to the cash available",
        tags=buy.tags,
    )


def unique_sequences(sequences: Iterable[ActionSequence], limit: int) -> list[ActionSequence]:
    """Non-empty sequences without repeats, in first-seen order, at most `limit`."""
    seen: set[ActionSequence] = set()
    out: list[ActionSequence] = []
    for sequence in sequences:
        if not sequence or sequence in seen:
            continue
        seen.add(sequence)
        out.append(sequence)
        if len(out) >= limit:
            break
    return out
