"""What the engine needs from a domain: parse a context, evaluate sequences, make a plan.

The engine is domain-agnostic: it moves `Action`s between modules and asks the domain to
score whole batches of sequences at once (vectorised), to simulate the winner step by step
and to turn it into a `Plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from planforge.contract import Plan
from planforge.holistic.modules import ActionSequence

__all__ = ["Domain", "Evaluation", "Simulation"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Scores of a batch of sequences, aligned with the batch.

    `feasible[i]` is False when sequence i cannot execute (a buy cash cannot cover, a sell of
    more than is held...); its score is then `-inf`.
    """

    scores: npt.NDArray[np.float64]
    feasible: npt.NDArray[np.bool_]
    costs: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Simulation:
    """One sequence executed step by step: what happened, and the end state's score."""

    executed: ActionSequence
    feasible: bool
    end_state_score: float
    current_score: float
    cash_before: float
    cash_after: float
    cash_required: float
    cash_generated: float
    costs: float
    breakdown: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


class Domain(Protocol):
    """A planning domain the holistic engine can drive."""

    #: The domain's `[planner]` keys (beyond the engine's own), every field with a default.
    Settings: type[BaseModel]

    def parse_context(self, raw: Mapping[str, Any]) -> Any:
        """Validate a raw context; raise `planforge.errors.PlannerError` naming the field."""

    def context_digest(self, context: Any) -> str:
        """A stable digest of the context, for the calculation cache."""

    def evaluate(
        self, context: Any, sequences: Sequence[ActionSequence], settings: BaseModel
    ) -> Evaluation:
        """Score a batch of sequences at once."""

    def simulate(self, context: Any, sequence: ActionSequence, settings: BaseModel) -> Simulation:
        """Execute one sequence in order; same score function as `evaluate`."""

    def build_plan(
        self,
        objective: str,
        simulation: Simulation,
        *,
        planner_name: str,
        planner_version: str,
        warnings: Sequence[str],
    ) -> Plan:
        """The plan: exactly the executed steps, numbered, each with a narrative."""
