"""A/B comparison: two configurations, one context, both plans side by side and a winner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planforge.holistic._domain import Simulation
from planforge.holistic._engine import EngineResult, HolisticEngine

__all__ = ["ABResult", "compare"]


def _side(result: EngineResult, referee: Simulation) -> dict[str, Any]:
    metrics = result.plan.metrics
    return {
        "end_state_score": metrics.get("end_state_score"),
        "current_score": metrics.get("current_score"),
        "improvement": metrics.get("improvement"),
        "referee_end_state_score": referee.end_state_score,
        "referee_improvement": referee.end_state_score - referee.current_score,
        "steps": len(result.plan.steps),
        "cash_required": metrics.get("cash_required"),
        "cash_generated": metrics.get("cash_generated"),
        "sequences_evaluated": result.sequences_evaluated,
        "warnings": list(result.warnings),
        "duration_ms": round(result.duration_ms, 3),
    }


@dataclass(frozen=True, slots=True)
class ABResult:
    """Both runs, both plans re-scored by the referee settings, and the winner."""

    a: EngineResult
    b: EngineResult
    referee_a: Simulation
    referee_b: Simulation
    winner: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": _side(self.a, self.referee_a),
            "b": _side(self.b, self.referee_b),
            "referee": "a",
            "winner": self.winner,
        }


def compare(
    engine_a: HolisticEngine,
    engine_b: HolisticEngine,
    objective: str,
    context: Mapping[str, Any],
) -> ABResult:
    """Plan the same context with both engines and judge both plans by one score function.

    A configuration's `[planner]` table can change the score itself (its weights, its cost
    penalty), so each side's own end-state score is not comparable with the other's. Both
    executed plans are therefore simulated again under configuration A's domain settings
    (the referee) and the higher referee end-state score wins. Equal scores go to the plan
    with fewer steps (less cost and churn), then to "a"; "tie" only when both plans are
    identical.
    """
    a = engine_a.run(objective, dict(context))
    b = engine_b.run(objective, dict(context))
    domain = engine_a.domain
    parsed = domain.parse_context(dict(context))
    settings = engine_a.config.domain
    referee_a = domain.simulate(parsed, a.simulation.executed, settings)
    referee_b = domain.simulate(parsed, b.simulation.executed, settings)
    score_a, score_b = referee_a.end_state_score, referee_b.end_state_score
    if score_a > score_b:
        winner = "a"
    elif score_b > score_a:
        winner = "b"
    elif len(a.plan.steps) != len(b.plan.steps):
        winner = "a" if len(a.plan.steps) < len(b.plan.steps) else "b"
    else:
        winner = "tie" if a.plan.steps == b.plan.steps else "a"
    return ABResult(a=a, b=b, referee_a=referee_a, referee_b=referee_b, winner=winner)
