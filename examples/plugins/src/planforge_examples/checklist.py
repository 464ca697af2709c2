"""A general-purpose planner that turns an objective into an ordered checklist."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner, PlanStep

_SPLIT = re.compile(r"\s*(?:,|;|\bthen\b|\band then\b)\s*", re.IGNORECASE)


class ChecklistPlanner(Planner):
    """Splits an objective on commas, semicolons and "then" into dependent steps."""

    name = "checklist"
    version = "1.2.0"
    capabilities = ("checklist", "general")
    tags = ("example", "text")
    tier = "gold"
    production_ready = True
    reliability_score = 0.8
    description = "Breaks any objective into an ordered checklist of steps"
    keywords = ("checklist", "steps", "todo", "tasks")
    context_kind = "any"  # the objective is all it reads; any context is fine

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        parts = [part for part in _SPLIT.split(objective.strip()) if part]
        steps: list[PlanStep] = []
        for number, part in enumerate(parts or [objective.strip() or "think"], start=1):
            steps.append(
                PlanStep(
                    id=f"step-{number}",
                    action="do",
                    description=part,
                    depends_on=[steps[-1].id] if steps else [],
                )
            )
        return self.new_plan(objective, steps, score=1.0, metrics={"steps": float(len(steps))})


class ScratchPlanner(Planner):
    """An experiment: it declares no reliability, so it is not chosen until it earns one."""

    name = "scratch"
    version = "0.0.1"
    capabilities = ("general",)
    tier = "alpha"
    description = "Experimental planner that returns a single step"
    keywords = ("experiment",)
    context_kind = "any"

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        return self.new_plan(objective, [PlanStep(id="only", action="try", description=objective)])
