"""The trading rules: whether one action may execute in a context under given settings.

A sequence with a step that breaks a rule is infeasible; the message says which rule and by
how much, for plans and for people.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge.holistic.modules import Action

if TYPE_CHECKING:
    from planforge.portfolio._model import PortfolioModel
    from planforge.portfolio._settings import PortfolioSettings

__all__ = ["action_problem"]


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
