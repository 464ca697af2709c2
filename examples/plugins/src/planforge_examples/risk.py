"""A risk review planner: one review step per hotspot, riskiest first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner, PlanStep


class RiskReviewPlanner(Planner):
    """Orders `context["hotspots"]` ({name: risk}) by risk and plans a review of each."""

    name = "risk_review"
    version = "0.9.0"
    capabilities = ("risk", "review")
    tags = ("example",)
    tier = "beta"
    production_ready = False
    reliability_score = 0.7
    description = "Plans reviews of the riskiest hotspots first"
    keywords = ("risk", "review", "audit", "hotspots")

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        hotspots = {str(k): float(v) for k, v in dict(context.get("hotspots", {})).items()}
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
