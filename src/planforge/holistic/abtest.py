"""A/B comparison: two configurations, one context, both plans side by side and a winner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planforge.holistic.engine import EngineResult, HolisticEngine

__all__ = ["ABResult", "compare"]


def _side(result: EngineResult) -> dict[str, Any]:
    metrics = result.plan.metrics
    return {
        "end_state_score": metrics.get("end_state_score"),
        "current_score": metrics.get("current_score"),
        "improvement": metrics.get("improvement"),
        "steps": len(result.plan.steps),
        "cash_required": metrics.get("cash_required"),
        "cash_generated": metrics.get("cash_generated"),
        "sequences_evaluated": result.sequences_evaluated,
        "warnings": list(result.warnings),
        "duration_ms": round(result.duration_ms, 3),
    }


@dataclass(frozen=True, slots=True)
class ABResult:
    a: EngineResult
    b: EngineResult
    winner: str

    def to_dict(self) -> dict[str, Any]:
        return {"a": _side(self.a), "b": _side(self.b), "winner": self.winner}


def compare(
    engine_a: HolisticEngine,
    engine_b: HolisticEngine,
    objective: str,
    context: Mapping[str, Any],
) -> ABResult:
    """Plan the same context with both engines; the higher end-state score wins.

    Equal scores go to the plan with fewer steps (less cost and churn), then to "a";
    "tie" only when both plans are identical.
    """
    a = engine_a.run(objective, dict(context))
    b = engine_b.run(objective, dict(context))
    score_a = a.plan.metrics.get("end_state_score", float("-inf"))
    score_b = b.plan.metrics.get("end_state_score", float("-inf"))
    if score_a > score_b:
        winner = "a"
    elif score_b > score_a:
        winner = "b"
    elif len(a.plan.steps) != len(b.plan.steps):
        winner = "a" if len(a.plan.steps) < len(b.plan.steps) else "b"
    else:
        winner = "tie" if a.plan.steps == b.plan.steps else "a"
    return ABResult(a=a, b=b, winner=winner)
