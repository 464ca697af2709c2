"""A risk review planner: one review step per hotspot, riskiest first.

It reads its own kind of context, `hotspots` (`{"hotspots": {name: risk}}`), and registers
that kind's validator in the `planforge.contexts` entry-point group, so a context of another
kind never reaches it and a bad one is refused naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner, PlanStep
from planforge.errors import InvalidContext

MAX_HOTSPOTS = 10_000


def validate_hotspots(context: Mapping[str, Any]) -> None:
    """The `hotspots` kind: `{"hotspots": {name: risk}}`, each risk a finite number >= 0."""
    hotspots = context.get("hotspots")
    if not isinstance(hotspots, Mapping):
        raise InvalidContext("hotspots", "an object of {name: risk} is required")
    for key in sorted(set(context) - {"hotspots"}):
        raise InvalidContext(key, "is not part of a hotspots context")
    if len(hotspots) > MAX_HOTSPOTS:
        raise InvalidContext("hotspots", f"at most {MAX_HOTSPOTS} hotspots, got {len(hotspots)}")
    for name, risk in hotspots.items():
        if not isinstance(name, str) or not name:
            raise InvalidContext("hotspots", f"every name must be a non-empty string: {name!r}")
        if (
            isinstance(risk, bool)
            or not isinstance(risk, int | float)
            or not math.isfinite(risk)
            or risk < 0
        ):
            raise InvalidContext(f"hotspots.{name}", "must be a finite number >= 0")


class RiskReviewPlanner(Planner):
    """Orders `context["hotspots"]` ({name: risk}) by risk and plans a review of each."""

    name = "risk_review"
    version = "1.0.0"
    capabilities = ("risk", "review")
    tags = ("example",)
    tier = "beta"
    production_ready = False
    reliability_score = 0.7
    description = "Plans reviews of the riskiest hotspots first"
    keywords = ("risk", "review", "audit", "hotspots")
    context_kind = "hotspots"

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        validate_hotspots(context)
        hotspots = {str(k): float(v) for k, v in dict(context["hotspots"]).items()}
        ordered = sorted(hotspots.items(), key=lambda item: (-item[1], item[0]))
        steps = [
            PlanStep(
                id=f"review-{index}",
                action="review",
                description=f"Review {name} (risk {risk:.2f})",
                params={"target": name, "risk": risk},
            )
            for index, (name, risk) in enumerate(ordered, start=1)
        ]
        return self.new_plan(objective, steps, score=float(len(steps) > 0))
