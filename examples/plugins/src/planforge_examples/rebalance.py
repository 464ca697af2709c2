"""A threshold rebalancer: trade each targeted holding back to its target weight."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner, PlanStep
from planforge.portfolio.context import PortfolioContext, parse_context

_DEFAULT_BAND = 0.02


class ThresholdRebalancePlanner(Planner):
    """Sells what is above its target weight by more than the band, then buys what is below.

    Reads a portfolio context (the holistic planner's format, `examples/portfolio.json`):
    positions valued at their current prices in the base currency, plus cash, make the total;
    only securities with a target in `targets.by_security` are traded, whole lots only, never
    an ineligible symbol nor a trade below `min_trade_value`. Sells come first so their cash
    funds the buys; costs (`costs.fixed` + `costs.percent`) are charged on every trade.
    """

    name = "threshold_rebalance"
    version = "3.0.0"
    capabilities = ("rebalance", "portfolio", "trades")
    tags = ("example", "finance")
    tier = "stable"
    production_ready = True
    reliability_score = 0.9
    description = "Rebalances a portfolio back to target weights when drift exceeds a band"
    keywords = ("rebalance", "portfolio", "allocation", "drift", "weights")
    context_kind = "portfolio"

    def __init__(self, band: float = _DEFAULT_BAND) -> None:
        if not 0.0 <= band < 1.0:
            raise ValueError(f"band must be in [0, 1), got {band!r}")
        self.band = band

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        portfolio = parse_context({k: v for k, v in context.items() if k != "planner_config"})
        values = {
            p.symbol: p.quantity * p.current_price * portfolio.fx(p.currency)
            for p in portfolio.positions
        }
        total = sum(values.values()) + portfolio.cash
        if total <= 0:
            return self.new_plan(objective, [], score=0.0, warnings=["the portfolio is empty"])
        targets = portfolio.targets.by_security
        if not targets:
            return self.new_plan(
                objective, [], score=1.0, warnings=["no targets.by_security: nothing to rebalance"]
            )
        drift = {s: values.get(s, 0.0) / total - targets[s] for s in sorted(targets)}
        trader = _Trader(portfolio)
        for symbol in sorted(s for s, d in drift.items() if d > self.band):
            trader.trade(symbol, "sell", drift[symbol] * total)
        for symbol in sorted(s for s, d in drift.items() if d < -self.band):
            trader.trade(symbol, "buy", min(-drift[symbol] * total, trader.cash))
        after = {s: (values.get(s, 0.0) + trader.moved.get(s, 0.0)) / total for s in targets}
        residual = max(abs(after[s] - targets[s]) for s in targets)
        return self.new_plan(
            objective,
            trader.steps,
            score=round(1.0 - min(1.0, residual), 6),
            metrics={
                "total_value": round(total, 2),
                "trades": float(len(trader.steps)),
                "max_drift_before": round(max(abs(d) for d in drift.values()), 6),
                "max_drift_after": round(residual, 6),
                "costs": round(trader.costs, 2),
                "cash_after": round(trader.cash, 2),
            },
            warnings=trader.warnings,
        )


class _Trader:
    """Turns target trade values into whole-lot steps; sells before buys, cash tracked."""

    def __init__(self, portfolio: PortfolioContext) -> None:
        self.portfolio = portfolio
        self.cash = portfolio.cash
        self.costs = 0.0
        self.steps: list[PlanStep] = []
        self.moved: dict[str, float] = {}
        self.warnings: list[str] = []
        self._sells: list[str] = []

    def trade(self, symbol: str, action: str, value: float) -> None:
        portfolio = self.portfolio
        rules = portfolio.restrictions
        allowed = rules.allow_sell if action == "sell" else rules.allow_buy
        if symbol in rules.ineligible or not allowed:
            self.warnings.append(f"{symbol}: drifted but may not be {action}ing now; left as is")
            return
        held = next((p for p in portfolio.positions if p.symbol == symbol), None)
        security = portfolio.security(symbol)
        price = held.current_price if held is not None else security.price
        if price is None:
            self.warnings.append(f"{symbol}: no price known; cannot buy it")
            return
        currency = held.currency if held is not None else security.currency
        unit = price * portfolio.fx(currency) * security.lot_size
        lots = math.floor(value / unit)
        if action == "sell" and held is not None:
            lots = min(lots, math.floor(held.quantity / security.lot_size))
        amount = lots * unit
        if lots <= 0 or amount < portfolio.min_trade_value:
            return
        cost = portfolio.costs.fixed + portfolio.costs.percent * amount
        if action == "buy" and amount + cost > self.cash:
            return
        self.cash += amount - cost if action == "sell" else -(amount + cost)
        self.costs += cost
        self.moved[symbol] = -amount if action == "sell" else amount
        quantity = lots * security.lot_size
        self.steps.append(
            PlanStep(
                id=f"{action}-{symbol}",
                action=action,
                description=f"{action.capitalize()} {quantity:g} {symbol} back towards its target",
                params={
                    "symbol": symbol,
                    "quantity": quantity,
                    "value_base": round(amount, 2),
                    "currency": portfolio.base_currency,
                },
                depends_on=list(self._sells) if action == "buy" else [],
                tags=[action],
            )
        )
        if action == "sell":
            self._sells.append(self.steps[-1].id)
