"""Built-in opportunity calculators: each looks at the portfolio and proposes candidate trades.

Every candidate is lot-sized, at least the context's `min_trade_value`, valued in the base
currency (quantity x price x FX rate), never on an ineligible symbol, a sell only when
selling is allowed and a buy only when buying is. Priorities are in [0, 1], higher first, and
each calculator returns at most `max_actions` candidates, best first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic.modules import Action, OpportunityCalculator
from planforge.portfolio._common import (
    BUY,
    SELL,
    WEIGHT_GAP_HALF,
    Book,
    TargetParams,
    coerce_params,
    make_trade,
    saturate,
    sized,
    top,
)
from planforge.portfolio.context import PortfolioContext

__all__ = [
    "AveragingDownCalculator",
    "OpportunityBuysCalculator",
    "ProfitTakingCalculator",
    "RebalanceBuysCalculator",
    "RebalanceSellsCalculator",
    "WeightBasedCalculator",
]

_PARAMS = ConfigDict(extra="forbid", frozen=True)

_MAX_ACTIONS = Field(default=5, ge=1, le=100, description="At most this many candidates.")
_TOLERANCE = Field(
    default=0.02,
    ge=0.0,
    le=0.5,
    description="Weight gap (fraction of the portfolio) ignored as noise.",
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


class ProfitTakingCalculator(OpportunityCalculator):
    """Sells part of a windfall: a position whose price has risen far above what was paid.

    A gain of `windfall_threshold` or more over the average price (in the position's own
    currency) proposes selling `sell_fraction` of the position, locking in part of a gain
    that may not last while keeping exposure to the rest. The priority grows with the
    windfall, gain / (gain + threshold): 0.5 at the threshold, 0.75 at three times it.
    A position bought at price 0 counts as the largest windfall (priority 1).
    """

    name = "profit_taking"
    version = "1.0.0"
    author = "planforge"
    description = "Sell part of a position whose gain over its average price is a windfall."
    tags = ("sell", "windfall", "profit")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        windfall_threshold: float = Field(
            default=0.5, ge=0.01, le=10.0, description="Gain over the average price (0.5 = +50%)."
        )
        sell_fraction: float = Field(
            default=0.3, gt=0.0, le=1.0, description="Share of the position to sell."
        )
        max_actions: int = _MAX_ACTIONS

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        if not context.restrictions.allow_sell:
            return []
        book = Book.of(context)
        actions: list[Action] = []
        for symbol in sorted(book.positions):
            position = book.positions[symbol]
            if not book.eligible(symbol) or position.quantity <= 0:
                continue
            if position.average_price > 0:
                gain = position.current_price / position.average_price - 1.0
            else:
                gain = float("inf")
            # relative slack so a price exactly at the threshold counts despite float rounding
            if gain < p.windfall_threshold * (1.0 - 1e-9):
                continue
            action = make_trade(
                book,
                SELL,
                symbol,
                quantity=position.quantity * p.sell_fraction,
                priority=saturate(gain, p.windfall_threshold),
                category=self.name,
                reason=f"windfall: up {_pct(gain)} on the average price; take "
                f"{_pct(p.sell_fraction)} off the table",
                tags=("windfall",),
            )
            if action is not None:
                actions.append(action)
        return top(actions, p.max_actions)


class AveragingDownCalculator(OpportunityCalculator):
    """Buys more of a good-quality holding that has dipped well below its average price.

    A position trading at or below average x (1 + `dip_threshold`) whose security quality is
    at least `min_quality` proposes a top-up of `top_up_fraction` of the position's current
    value: a temporary dip in a sound business lowers the average cost. Priority blends the
    quality (half) with the depth of the dip (half, saturating at twice the threshold).
    """

    name = "averaging_down"
    version = "1.0.0"
    author = "planforge"
    description = "Top up good-quality holdings trading well below their average price."
    tags = ("buy", "averaging_down", "quality")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        dip_threshold: float = Field(
            default=-0.20,
            ge=-0.95,
            le=-0.01,
            description="Price change vs the average price that counts as a dip (-0.2 = -20%).",
        )
        min_quality: float = Field(
            default=0.6, ge=0.0, le=1.0, description="Lowest security quality worth topping up."
        )
        top_up_fraction: float = Field(
            default=0.25,
            gt=0.0,
            le=2.0,
            description="Top-up size as a share of the position's current value.",
        )
        max_actions: int = _MAX_ACTIONS

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        if not context.restrictions.allow_buy:
            return []
        book = Book.of(context)
        depth_scale = 2.0 * abs(p.dip_threshold)
        actions: list[Action] = []
        for symbol in sorted(book.positions):
            position = book.positions[symbol]
            if not book.eligible(symbol) or position.average_price <= 0:
                continue
            change = position.current_price / position.average_price - 1.0
            quality = book.quality(symbol)
            # price <= average x (1 + threshold), with room for float rounding at the edge
            limit = position.average_price * (1.0 + p.dip_threshold) * (1.0 + 1e-12)
            if position.current_price > limit or quality < p.min_quality:
                continue
            dip = -change
            action = make_trade(
                book,
                BUY,
                symbol,
                value=book.position_values[symbol] * p.top_up_fraction,
                priority=0.5 * quality + 0.5 * min(1.0, dip / depth_scale),
                category=self.name,
                reason=f"quality dip: {_pct(change)} vs the average price, quality {quality:.2f}",
                tags=("averaging_down",),
            )
            if action is not None:
                actions.append(action)
        return top(actions, p.max_actions)


class OpportunityBuysCalculator(OpportunityCalculator):
    """Buys high-quality securities the portfolio lacks or holds below their target.

    A security qualifies when its quality is at least `min_quality` and it is either not held
    or held below its `targets.by_security` weight by more than `tolerance` (a held security
    without a target is already owned in the amount chosen). The buy is `trade_fraction` of
    the portfolio's value, capped at the gap to the security's target when it has one. Its
    priority is the quality. A security without a price cannot be bought.
    """

    name = "opportunity_buys"
    version = "1.0.0"
    author = "planforge"
    description = "Buy high-quality securities that are not held or are below their target."
    tags = ("buy", "quality", "opportunity")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        min_quality: float = Field(
            default=0.7, ge=0.0, le=1.0, description="Lowest quality worth buying."
        )
        trade_fraction: float = Field(
            default=0.05, gt=0.0, le=1.0, description="Buy size as a share of portfolio value."
        )
        tolerance: float = _TOLERANCE
        max_actions: int = _MAX_ACTIONS

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        if not context.restrictions.allow_buy:
            return []
        book = Book.of(context)
        targets = context.targets.by_security
        actions: list[Action] = []
        for symbol in sorted(book.securities):
            quality = book.quality(symbol)
            if not book.eligible(symbol) or quality < p.min_quality:
                continue
            size = p.trade_fraction * book.total_value
            target = targets.get(symbol)
            if target is not None:
                gap = target - book.weight(symbol)
                if gap <= p.tolerance:
                    continue
                size = min(size, gap * book.total_value)
                why = f"quality {quality:.2f}, {_pct(book.weight(symbol))} held vs {_pct(target)}"
            elif symbol in book.positions:
                continue
            else:
                why = f"quality {quality:.2f}, not held"
            action = make_trade(
                book,
                BUY,
                symbol,
                value=size,
                priority=quality,
                category=self.name,
                reason=f"opportunity: {why}",
                tags=("opportunity",),
            )
            if action is not None:
                actions.append(action)
        return top(actions, p.max_actions)


def _dimensions(p: TargetParams) -> tuple[str, ...]:
    return tuple(
        name for name, on in (("country", p.by_country), ("industry", p.by_industry)) if on
    )


def _group_targets(context: PortfolioContext, dimension: str) -> dict[str, float]:
    targets = context.targets
    return dict(targets.by_country if dimension == "country" else targets.by_industry)


class RebalanceSellsCalculator(OpportunityCalculator):
    """Sells positions that make the portfolio overweight against its allocation targets.

    For each held security it measures the excess over its own target, over its country's
    target and over its industry's target (weights are shares of the whole portfolio,
    cash included); a group excess is shared among the group's positions in proportion to
    their value. Only dimensions with a target are compared: no target means no opinion.
    The sell is the largest of those excesses (they overlap, so they are not added) and
    its priority grows with the excess weight, gap / (gap + 0.05).
    """

    name = "rebalance_sells"
    version = "1.0.0"
    author = "planforge"
    description = "Sell down positions overweight against security, country or industry targets."
    tags = ("sell", "rebalance", "allocation")
    dependencies = ()

    class Params(TargetParams):
        pass

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        if not context.restrictions.allow_sell or not context.positions:
            return []
        book = Book.of(context)
        actions: list[Action] = []
        for symbol in sorted(book.positions):
            held_value = book.position_values[symbol]
            if not book.eligible(symbol) or held_value <= 0:
                continue
            for value, excess, why in self._excesses(context, book, symbol, p):
                actions.extend(
                    sized(
                        book,
                        SELL,
                        symbol,
                        value=value,
                        priority=saturate(excess, WEIGHT_GAP_HALF),
                        category=self.name,
                        reason=f"overweight: {why}",
                        tags=("rebalance",),
                    )
                )
        return top(actions, p.max_actions)

    @staticmethod
    def _excesses(
        context: PortfolioContext, book: Book, symbol: str, p: TargetParams
    ) -> list[tuple[float, float, str]]:
        """(sell value, excess weight, why) for each target `symbol` is over: its own, and its
        share of its country's and industry's excess (each is a size worth trying)."""
        total = book.total_value
        found: list[tuple[float, float, str]] = []
        target = context.targets.by_security.get(symbol) if p.by_security else None
        if target is not None:
            excess = book.weight(symbol) - target
            if excess > p.tolerance:
                why = f"{symbol} {_pct(book.weight(symbol))} vs target {_pct(target)}"
                found.append((excess * total, excess, why))
        for dimension in _dimensions(p):
            group = book.group_of(symbol, dimension)
            group_target = _group_targets(context, dimension).get(group)
            if group_target is None:
                continue
            group_weight = book.group_weight(dimension, group)
            excess = group_weight - group_target
            if excess <= p.tolerance:
                continue
            share = book.position_values[symbol] / book.groups[dimension][group]
            why = f"{dimension} {group} {_pct(group_weight)} vs target {_pct(group_target)}"
            found.append((excess * total * share, excess, why))
        return found


class RebalanceBuysCalculator(OpportunityCalculator):
    """Buys toward allocation targets the portfolio falls short of.

    A security below its own target buys the gap. A country or industry below its target
    buys the gap in that group's highest-quality eligible, priced security that is not
    already at its own target (ties by symbol), because one solid purchase beats many tiny
    ones. A symbol wanted by several dimensions buys the largest gap (they overlap).
    Prices come from the security's `price` or, when held, the position's current price;
    a security with neither cannot be bought. Priority: 0.8 x gap / (gap + 0.05) plus
    0.2 x quality, so a bigger shortfall matters most and quality breaks near-ties.
    """

    name = "rebalance_buys"
    version = "1.0.0"
    author = "planforge"
    description = "Buy toward security, country or industry targets the portfolio is short of."
    tags = ("buy", "rebalance", "allocation")
    dependencies = ()

    class Params(TargetParams):
        pass

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        if not context.restrictions.allow_buy:
            return []
        book = Book.of(context)
        total = book.total_value
        security_targets = context.targets.by_security

        def buyable(symbol: str) -> bool:
            if not book.eligible(symbol) or book.unit_price(symbol) is None:
                return False
            target = security_targets.get(symbol)
            return target is None or book.weight(symbol) < target

        wanted: dict[str, list[tuple[float, float, str]]] = {}  # symbol -> [(value, gap, why)]

        def want(symbol: str, gap: float, why: str) -> None:
            wanted.setdefault(symbol, []).append((gap * total, gap, why))

        if p.by_security:
            for symbol in sorted(security_targets):
                target = security_targets[symbol]
                gap = target - book.weight(symbol)
                if gap > p.tolerance and buyable(symbol):
                    want(symbol, gap, f"{symbol} {_pct(book.weight(symbol))} vs {_pct(target)}")
        for dimension in _dimensions(p):
            group_targets = _group_targets(context, dimension)
            for group in sorted(group_targets):
                weight = book.group_weight(dimension, group)
                gap = group_targets[group] - weight
                if gap <= p.tolerance:
                    continue
                members = [
                    s
                    for s in sorted(book.securities)
                    if book.group_of(s, dimension) == group and buyable(s)
                ]
                if not members:
                    continue
                pick = min(members, key=lambda s: (-book.quality(s), s))
                want(
                    pick,
                    gap,
                    f"{dimension} {group} {_pct(weight)} vs {_pct(group_targets[group])}",
                )
        return top(_target_buys(book, wanted, self.name), p.max_actions)


def _target_buys(
    book: Book, wanted: Mapping[str, list[tuple[float, float, str]]], category: str
) -> list[Action]:
    """A buy for each gap of each wanted symbol (its own target, its country's, its
    industry's: each is a size worth trying), the larger weight gap first in priority."""
    actions: list[Action] = []
    for symbol in sorted(wanted):
        for value, gap, why in wanted[symbol]:
            actions.extend(
                sized(
                    book,
                    BUY,
                    symbol,
                    value=value,
                    priority=0.8 * saturate(gap, WEIGHT_GAP_HALF) + 0.2 * book.quality(symbol),
                    category=category,
                    reason=f"underweight: {why}",
                    tags=("rebalance",),
                )
            )
    return actions


class WeightBasedCalculator(OpportunityCalculator):
    """Moves the securities furthest from their target weights, on both sides.

    For each security with a `targets.by_security` weight, the deviation is its current
    weight minus the target. The `max_actions` largest absolute deviations beyond
    `tolerance` become a sell (overweight) or a buy (underweight) of exactly the deviation,
    so the biggest misallocations are fixed first. Priority: |dev| / (|dev| + 0.05).
    """

    name = "weight_based"
    version = "1.0.0"
    author = "planforge"
    description = "Trade the largest deviations from target security weights, buys and sells."
    tags = ("buy", "sell", "rebalance", "weights")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        tolerance: float = _TOLERANCE
        max_actions: int = _MAX_ACTIONS

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        p = coerce_params(self.Params, params)
        book = Book.of(context)
        restrictions = context.restrictions
        deviations: list[tuple[float, str, float]] = []  # (-|dev|, symbol, dev)
        for symbol, target in sorted(context.targets.by_security.items()):
            deviation = book.weight(symbol) - target
            if abs(deviation) <= p.tolerance or not book.eligible(symbol):
                continue
            if deviation > 0 and not restrictions.allow_sell:
                continue
            if deviation < 0 and not restrictions.allow_buy:
                continue
            deviations.append((-abs(deviation), symbol, deviation))
        actions: list[Action] = []
        for _, symbol, deviation in sorted(deviations):
            if len(actions) >= p.max_actions:
                break
            target = context.targets.by_security[symbol]
            actions.extend(
                sized(
                    book,
                    SELL if deviation > 0 else BUY,
                    symbol,
                    value=abs(deviation) * book.total_value,
                    priority=saturate(abs(deviation), WEIGHT_GAP_HALF),
                    category=self.name,
                    reason=f"weight {_pct(book.weight(symbol))} vs target {_pct(target)}",
                    tags=("rebalance",),
                )
            )
        return top(actions, p.max_actions)
