"""A threshold rebalancer: trade each holding back to its target weight."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner, PlanStep

_DEFAULT_BAND = 0.05


class ThresholdRebalancePlanner(Planner):
    """Sells what is above its target weight by more than the band, then buys what is below.

    Context: `positions` {symbol: market value}, `targets` {symbol: weight}, optional `cash`
    and `band` (default 0.05). Sells come first so their cash funds the buys.
    """

    name = "threshold_rebalance"
    version = "2.0.1"
    capabilities = ("rebalance", "portfolio", "trades")
    tags = ("example", "finance")
    tier = "stable"
    production_ready = True
    reliability_score = 0.9
    description = "Rebalances a portfolio back to target weights when drift exceeds a band"
    keywords = ("rebalance", "portfolio", "allocation", "drift", "weights")

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        positions = {str(k): float(v) for k, v in dict(context.get("positions", {})).items()}
        targets = {str(k): float(v) for k, v in dict(context.get("targets", {})).items()}
        cash = float(context.get("cash", 0.0))
        band = float(context.get("band", _DEFAULT_BAND))
        total = sum(positions.values()) + cash
        steps: list[PlanStep] = []
        if total <= 0:
            return self.new_plan(objective, [], score=0.0, warnings=["portfolio is empty"])
        drift = {
            symbol: positions.get(symbol, 0.0) / total - targets.get(symbol, 0.0)
            for symbol in sorted(set(positions) | set(targets))
        }
        sells = [s for s, d in drift.items() if d > band]
        buys = [s for s, d in drift.items() if d < -band]
        for symbol in sells:
            value = round(drift[symbol] * total, 2)
            steps.append(
                PlanStep(
                    id=f"sell-{symbol}",
                    action="sell",
                    description=f"Sell {value:.2f} of {symbol} ({drift[symbol]:+.1%} over target)",
                    params={"symbol": symbol, "value": value},
                    tags=["sell"],
                )
            )
        sell_ids = [step.id for step in steps]
        for symbol in buys:
            value = round(-drift[symbol] * total, 2)
            steps.append(
                PlanStep(
                    id=f"buy-{symbol}",
                    action="buy",
                    description=f"Buy {value:.2f} of {symbol} ({drift[symbol]:+.1%} under target)",
                    params={"symbol": symbol, "value": value},
                    depends_on=sell_ids,
                    tags=["buy"],
                )
            )
        residual = sum(abs(d) for s, d in drift.items() if s not in sells and s not in buys)
        return self.new_plan(
            objective,
            steps,
            score=round(1.0 - min(1.0, residual), 6),
            metrics={"total_value": round(total, 2), "trades": float(len(steps))},
        )
