"""The portfolio domain the holistic engine drives: context, evaluation, simulation, plan.

`evaluate` scores whole batches at once; `simulate` walks one sequence step by step for the
plan's details but takes its score from the same vectorised function, so a plan's
`end_state_score` is exactly what the search saw and `current_score` is the score of the
empty sequence. The score formula is in `planforge.portfolio.evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from planforge.contract import Plan, PlannerRef, PlanStep
from planforge.holistic import Evaluation, Simulation
from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio.context import PortfolioContext, Position, parse_context
from planforge.portfolio.evaluation import (
    PortfolioModel,
    PortfolioSettings,
    ScoreDetail,
    action_problem,
    evaluate_sequences,
    model_for,
    score_detail,
)

__all__ = ["ExecutedTrade", "PortfolioDomain", "PortfolioSettings", "PortfolioSimulation"]


@dataclass(frozen=True, slots=True)
class ExecutedTrade:
    """One step the simulation executed, with the numbers the plan shows."""

    action: Action
    side: str
    symbol: str
    quantity: float
    price: float
    currency: str
    value_base: float
    cost: float
    cash_after: float
    #: Gain of the price over the position's average price (sells of held positions).
    gain: float | None = None


@dataclass(frozen=True, slots=True)
class PortfolioSimulation(Simulation):
    """A `Simulation` with each executed trade's numbers, for the plan."""

    trades: tuple[ExecutedTrade, ...] = ()
    base_currency: str = "EUR"


def _settings(settings: BaseModel | Mapping[str, Any] | None) -> PortfolioSettings:
    if isinstance(settings, PortfolioSettings):
        return settings
    if settings is None:
        return PortfolioSettings()
    if isinstance(settings, BaseModel):
        return PortfolioSettings.model_validate(settings.model_dump())
    return PortfolioSettings.model_validate(dict(settings))


def _context(context: PortfolioContext | Mapping[str, Any]) -> PortfolioContext:
    return parse_context(context)


def _qty(quantity: float) -> str:
    if float(quantity).is_integer():
        return f"{quantity:,.0f}"
    return f"{quantity:,.4f}".rstrip("0").rstrip(".")


def _why(trade: ExecutedTrade) -> str:
    if trade.action.reason:
        return trade.action.reason
    if trade.side == "sell":
        if trade.gain is not None and trade.gain > 0:
            return f"take profit on a {trade.gain * 100:.0f}% gain"
        if trade.gain is not None and trade.gain < 0:
            return f"sell at a {-trade.gain * 100:.0f}% loss"
        return "raise cash and reduce the position"
    return "move the portfolio towards its targets"


def narrative(trade: ExecutedTrade, base_currency: str) -> str:
    """One line a person reads: what, how much, for what value, and why."""
    side = trade.side.capitalize()
    return (
        f"{side} {_qty(trade.quantity)} {trade.symbol} ({trade.currency}) for "
        f"{trade.value_base:,.2f} {base_currency}: {_why(trade)}"
    )


class PortfolioDomain:
    """Portfolio rebalancing for the holistic engine (see the module docstring)."""

    Settings: type[BaseModel] = PortfolioSettings

    def parse_context(self, raw: Mapping[str, Any] | PortfolioContext) -> PortfolioContext:
        return parse_context(raw)

    def context_digest(self, context: PortfolioContext | Mapping[str, Any]) -> str:
        return model_for(_context(context)).digest

    def evaluate(
        self,
        context: PortfolioContext | Mapping[str, Any],
        sequences: Sequence[ActionSequence],
        settings: BaseModel | Mapping[str, Any] | None = None,
    ) -> Evaluation:
        model = model_for(_context(context))
        scores, feasible, costs = evaluate_sequences(model, sequences, _settings(settings))
        return Evaluation(scores=scores, feasible=feasible, costs=costs)

    def scores_if_allowed(
        self,
        context: PortfolioContext | Mapping[str, Any],
        sequences: Sequence[ActionSequence],
        settings: BaseModel | Mapping[str, Any] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Each sequence's score as if no rule refused it: the same function as `evaluate`,
        for a small batch. An explanation uses it to find the closest plan a rule stopped;
        planning never does. A sequence short of cash ends with negative cash, which the
        score reads as borrowed money (weights above the portfolio's value), so it scores
        lower the more money it lacks."""
        model = model_for(_context(context))
        return score_detail(model, list(sequences), _settings(settings)).allowed_scores

    def simulate(
        self,
        context: PortfolioContext | Mapping[str, Any],
        sequence: ActionSequence,
        settings: BaseModel | Mapping[str, Any] | None = None,
    ) -> PortfolioSimulation:
        parsed = _context(context)
        chosen = _settings(settings)
        model = model_for(parsed)
        steps = tuple(sequence)
        detail = score_detail(model, [(), steps], chosen)
        current = float(detail.scores[0])
        feasible = bool(detail.feasible[1])
        cash_before = model.cash
        trades: list[ExecutedTrade] = []
        reason = ""
        seen: set[str] = set()
        held = {p.symbol: p for p in parsed.positions}
        for number, action in enumerate(steps, start=1):
            problem = action_problem(model, chosen, action)
            cash_after = float(detail.cash_path[number, 1])
            if problem is None and action.key in seen:
                problem = f"{action.key} appears more than once in the sequence"
            if problem is None and cash_after < 0:
                record = model.record(action)
                cash_now = float(detail.cash_path[number - 1, 1])
                problem = (
                    f"cash {cash_now:,.2f} {parsed.base_currency} cannot cover "
                    f"{record.value + record.cost:,.2f} (value plus costs)"
                )
            if problem is not None:
                reason = f"step {number} ({action.side} {action.key}): {problem}"
                break
            seen.add(action.key)
            trades.append(_executed(model, action, held.get(action.key), cash_after))
        if not feasible and not reason:  # both checks follow the same rules; never silent
            reason = "the sequence is infeasible"
        cash_required = sum(t.value_base + t.cost for t in trades if t.side == "buy")
        cash_generated = sum(t.value_base - t.cost for t in trades if t.side == "sell")
        return PortfolioSimulation(
            executed=tuple(t.action for t in trades),
            feasible=feasible,
            end_state_score=float(detail.scores[1]),
            current_score=current,
            cash_before=cash_before,
            cash_after=trades[-1].cash_after if trades else cash_before,
            cash_required=cash_required,
            cash_generated=cash_generated,
            costs=float(detail.costs[1]) if feasible else sum(t.cost for t in trades),
            breakdown=_breakdown(detail),
            reason=reason,
            trades=tuple(trades),
            base_currency=parsed.base_currency,
        )

    def build_plan(
        self,
        objective: str,
        simulation: Simulation,
        *,
        planner_name: str,
        planner_version: str,
        warnings: Sequence[str],
    ) -> Plan:
        notes = list(warnings)
        base = getattr(simulation, "base_currency", "EUR")
        trades = _trades_of(simulation)
        current = simulation.current_score
        end = simulation.end_state_score
        improvement = end - current if math.isfinite(end) else 0.0
        if not simulation.feasible:
            notes.append(
                f"the chosen sequence is infeasible ({simulation.reason or 'no reason given'}); "
                "no trades are proposed"
            )
            trades = ()
        elif trades and not improvement > 0:
            notes.append(
                f"no sequence improves the score: best candidate ({len(trades)} steps) scored "
                f"{end:.6f} <= current {current:.6f}"
            )
            trades = ()
        elif not trades and not notes:
            notes.append(
                f"no trades: nothing improves on the current score {current:.6f}, "
                "so the portfolio is kept as it is"
            )
        if not trades:
            end, improvement = current, 0.0
        metrics = {
            "current_score": current,
            "end_state_score": end,
            "improvement": improvement,
            "cash_required": sum(t.value_base + t.cost for t in trades if t.side == "buy"),
            "cash_generated": sum(t.value_base - t.cost for t in trades if t.side == "sell"),
            "feasible": 1.0 if simulation.feasible else 0.0,
            "costs": sum(t.cost for t in trades),
            "cash_before": simulation.cash_before,
            "cash_after": trades[-1].cash_after if trades else simulation.cash_before,
        }
        for key in sorted(simulation.breakdown):
            value = float(simulation.breakdown[key])
            if math.isfinite(value) and (trades or key.startswith("current_")):
                metrics[key] = value
        return Plan(
            objective=objective,
            planner=PlannerRef(name=planner_name, version=planner_version),
            steps=_plan_steps(trades, base),
            score=end,
            metrics={key: float(np.float64(value)) for key, value in metrics.items()},
            warnings=notes,
        )


def _executed(
    model: PortfolioModel, action: Action, position: Position | None, cash_after: float
) -> ExecutedTrade:
    """One step as executed: the model's numbers, and the gain on the position it trades."""
    record = model.record(action)
    gain = None
    if position is not None and position.average_price > 0:
        gain = position.current_price / position.average_price - 1.0
    return ExecutedTrade(
        action=action,
        side=action.side,
        symbol=action.key,
        quantity=record.quantity,
        price=record.price,
        currency=record.currency,
        value_base=record.value,
        cost=record.cost,
        cash_after=cash_after,
        gain=gain,
    )


def _breakdown(detail: ScoreDetail) -> dict[str, float]:
    """Each score term for the portfolio as it is (`current_` keys) and after the sequence."""
    breakdown: dict[str, float] = {}
    for prefix, row in (("current_", 0), ("", 1)):
        breakdown[f"{prefix}allocation_fit"] = float(detail.allocation_fit[row])
        for name, fits in detail.set_fits.items():
            breakdown[f"{prefix}fit_{name}"] = float(fits[row])
        breakdown[f"{prefix}diversification"] = float(detail.diversification[row])
        breakdown[f"{prefix}quality"] = float(detail.quality[row])
        breakdown[f"{prefix}cost_penalty"] = float(detail.cost_penalty[row])
    return breakdown


def _plan_steps(trades: Sequence[ExecutedTrade], base: str) -> list[PlanStep]:
    """One step a trade; every buy depends on the sells before it, which fund it."""
    steps: list[PlanStep] = []
    sells: list[str] = []
    for number, trade in enumerate(trades, start=1):
        step_id = str(number)
        steps.append(
            PlanStep(
                id=step_id,
                action=trade.side,
                description=narrative(trade, base),
                params={
                    "symbol": trade.symbol,
                    "quantity": trade.quantity,
                    "price": trade.price,
                    "currency": trade.currency,
                    "value_base": round(trade.value_base, 6),
                    "cost": round(trade.cost, 6),
                },
                depends_on=list(sells) if trade.side == "buy" else [],
                tags=list(trade.action.tags),
            )
        )
        if trade.side == "sell":
            sells.append(step_id)
    return steps


def _trades_of(simulation: Simulation) -> tuple[ExecutedTrade, ...]:
    """The executed trades; a plain `Simulation` gets them from its actions' own numbers."""
    if isinstance(simulation, PortfolioSimulation):
        return simulation.trades
    return tuple(
        ExecutedTrade(
            action=a,
            side=a.side,
            symbol=a.key,
            quantity=a.quantity,
            price=a.price,
            currency=a.currency,
            value_base=a.value,
            cost=0.0,
            cash_after=simulation.cash_after,
        )
        for a in simulation.executed
    )
