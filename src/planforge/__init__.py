"""planforge: a planner factory and runtime."""

from planforge.contract import Plan, Planner, PlannerRef, PlannerSpec, PlanStep

__version__ = "0.1.0"

__all__ = ["Plan", "PlanStep", "Planner", "PlannerRef", "PlannerSpec", "__version__"]
