"""Why this plan: what each stage of the pipeline proposed, kept and dropped, and, when the
plan is empty, the closest plan a rule stopped.

The engine fills a `Trace` only when a run asks for an explanation (`explain=True`), so a
normal run builds none of this. Every part is bounded: a calculator's candidates are the ones
the engine used (already cut to `max_opportunities_per_category`), stage figures are counts,
and at most `BLOCKED_SHOWN` blocked plans are described.

Counts add up at every stage, so a reader can follow every sequence:

- a generator's `produced` = `new` + `repeated` (empty, or already made by an earlier
  generator) + `cut` (past its cap or the engine's `max_sequences`);
- a filter's `received` = `kept` + `dropped`;
- feasibility's `received` = `kept` + `too_deep` + `repeated_symbol` + `low_priority`;
- the evaluation's `evaluated` = `feasible` + `infeasible`.

"The closest blocked plan" is the infeasible sequence (one the evaluation refused) with the
highest score it would have had if every rule had allowed it, when the domain can compute
that (`ScoresIfAllowed`); at most `BLOCKED_SCAN` infeasible sequences, those of the highest
mean priority, are scored. A domain that cannot score a refused sequence gets them ordered by
mean priority instead, without a score. The reason is the domain's own (`Simulation.reason`):
the first step that broke a rule, cash included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from planforge.holistic._domain import Domain
from planforge.holistic.modules import Action, ActionSequence

__all__ = [
    "BLOCKED_SCAN",
    "BLOCKED_SHOWN",
    "BlockedPlan",
    "CalculatorReport",
    "EvaluationReport",
    "Explanation",
    "FeasibilityReport",
    "FilterReport",
    "GeneratorReport",
    "ScoresIfAllowed",
    "Trace",
    "closest_blocked",
]

#: Most infeasible sequences scored as if allowed, to find the closest blocked plan.
BLOCKED_SCAN = 5000
#: Most blocked plans an explanation describes (the closest first).
BLOCKED_SHOWN = 3


def _number(value: float) -> float | None:
    """A float JSON can carry (None for -inf, inf and NaN)."""
    return float(value) if math.isfinite(value) else None


def _action_dict(action: Action) -> dict[str, Any]:
    return {
        "side": action.side,
        "symbol": action.key,
        "quantity": _number(action.quantity),
        "value": _number(action.value),
        "priority": _number(action.priority),
        "reason": action.reason,
    }


def mean_priority(sequence: ActionSequence) -> float:
    return sum(action.priority for action in sequence) / len(sequence) if sequence else 0.0


@dataclass(frozen=True, slots=True)
class CalculatorReport:
    """One opportunity calculator: the candidates the engine took from it (sorted by
    priority, cut to `max_opportunities_per_category`). `returned` is how many it returned
    before the cut, None when they came from the calculation cache (which keeps only the
    cut list); `failed` when it failed or timed out and so contributed nothing."""

    module: str
    candidates: tuple[Action, ...]
    returned: int | None
    from_cache: bool
    failed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "returned": self.returned,
            "from_cache": self.from_cache,
            "failed": self.failed,
            "candidates": [_action_dict(action) for action in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class GeneratorReport:
    """One pattern or sequence generator: `produced` = `new` + `repeated` + `cut`."""

    module: str
    produced: int
    new: int
    repeated: int
    cut: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "produced": self.produced,
            "new": self.new,
            "repeated": self.repeated,
            "cut": self.cut,
        }


@dataclass(frozen=True, slots=True)
class FilterReport:
    """One filter: what it received and what it kept (a filter only drops)."""

    module: str
    received: int
    kept: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "received": self.received,
            "kept": self.kept,
            "dropped": self.received - self.kept,
        }


@dataclass(frozen=True, slots=True)
class FeasibilityReport:
    """The engine's shape checks before evaluation, and the settings they applied."""

    received: int = 0
    kept: int = 0
    too_deep: int = 0
    repeated_symbol: int = 0
    low_priority: int = 0
    max_depth: int = 0
    priority_threshold: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "kept": self.kept,
            "dropped_depth": self.too_deep,
            "dropped_repeated_symbol": self.repeated_symbol,
            "dropped_priority": self.low_priority,
            "max_depth": self.max_depth,
            "priority_threshold": self.priority_threshold,
        }


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """The vectorised evaluation: how many sequences, how many could execute, the best."""

    evaluated: int = 0
    feasible: int = 0
    best_score: float = -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.evaluated,
            "feasible": self.feasible,
            "infeasible": self.evaluated - self.feasible,
            "best_score": _number(self.best_score),
        }


@dataclass(frozen=True, slots=True)
class BlockedPlan:
    """A sequence the evaluation refused: its steps, what it would have scored had every
    rule allowed it (None when the domain cannot say), and the rule that stopped it."""

    steps: ActionSequence
    score_if_allowed: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [_action_dict(action) for action in self.steps],
            "mean_priority": _number(mean_priority(self.steps)),
            "score_if_allowed": self.score_if_allowed,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why this plan, as plain data: `to_dict()` is what `Plan.explanation` carries.

    `blocked` is filled only when the plan is empty: the closest blocked plan first (see the
    module docstring for what "closest" means); `blocked_scored` is how many infeasible
    sequences were looked at to find them.
    """

    calculators: tuple[CalculatorReport, ...]
    candidates_offered: int
    candidates_kept: int
    generators: tuple[GeneratorReport, ...]
    filters: tuple[FilterReport, ...]
    feasibility: FeasibilityReport
    evaluation: EvaluationReport
    current_score: float
    plan_steps: int
    blocked: tuple[BlockedPlan, ...] = ()
    blocked_scored: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calculators": [report.to_dict() for report in self.calculators],
            "candidates": {"offered": self.candidates_offered, "kept": self.candidates_kept},
            "generators": [report.to_dict() for report in self.generators],
            "sequences": sum(report.new for report in self.generators),
            "filters": [report.to_dict() for report in self.filters],
            "feasibility": self.feasibility.to_dict(),
            "evaluation": self.evaluation.to_dict(),
            "current_score": _number(self.current_score),
            "plan_steps": self.plan_steps,
            "blocked": [plan.to_dict() for plan in self.blocked],
            "blocked_scored": self.blocked_scored,
        }


@dataclass(slots=True)
class Trace:
    """What one explained run collects, stage by stage (the engine appends as it goes)."""

    calculators: list[CalculatorReport] = field(default_factory=list)
    candidates_offered: int = 0
    candidates_kept: int = 0
    generators: list[GeneratorReport] = field(default_factory=list)
    filters: list[FilterReport] = field(default_factory=list)
    feasibility: FeasibilityReport = field(default_factory=FeasibilityReport)
    evaluation: EvaluationReport = field(default_factory=EvaluationReport)
    #: Indices (into the evaluated list) of the sequences the evaluation found infeasible.
    infeasible: list[npt.NDArray[np.intp]] = field(default_factory=list)

    def freeze(
        self,
        current_score: float,
        plan_steps: int,
        blocked: tuple[BlockedPlan, ...] = (),
        blocked_scored: int = 0,
    ) -> Explanation:
        return Explanation(
            calculators=tuple(self.calculators),
            candidates_offered=self.candidates_offered,
            candidates_kept=self.candidates_kept,
            generators=tuple(self.generators),
            filters=tuple(self.filters),
            feasibility=self.feasibility,
            evaluation=self.evaluation,
            current_score=current_score,
            plan_steps=plan_steps,
            blocked=blocked,
            blocked_scored=blocked_scored,
        )

    def infeasible_indices(self) -> list[int]:
        if not self.infeasible:
            return []
        return [int(index) for index in np.concatenate(self.infeasible)]


@runtime_checkable
class ScoresIfAllowed(Protocol):
    """A domain that can score a sequence its rules refuse, as if they allowed it."""

    def scores_if_allowed(
        self, context: Any, sequences: Sequence[ActionSequence], settings: BaseModel
    ) -> npt.NDArray[np.float64]:
        """One score a sequence, the same function as `evaluate`, with no rule applied."""
        ...


def closest_blocked(
    domain: Domain,
    context: Any,
    settings: BaseModel,
    refused: Sequence[ActionSequence],
    *,
    batch: int,
    check: Callable[[], None],
) -> tuple[tuple[BlockedPlan, ...], int]:
    """The closest blocked plans among `refused` (closest first, at most `BLOCKED_SHOWN`)
    and how many were scored; see the module docstring for the order."""
    ranked = sorted(range(len(refused)), key=lambda i: (-mean_priority(refused[i]), i))
    scanned = [refused[i] for i in ranked[:BLOCKED_SCAN]]
    if not scanned:
        return (), 0
    scores: list[float | None] = [None] * len(scanned)
    if isinstance(domain, ScoresIfAllowed):
        values = np.empty(len(scanned))
        for start in range(0, len(scanned), batch):
            check()
            chunk = scanned[start : start + batch]
            values[start : start + len(chunk)] = domain.scores_if_allowed(context, chunk, settings)
        values[~np.isfinite(values)] = -np.inf
        order = [int(i) for i in np.argsort(-values, kind="stable")]
        scores = [_number(float(value)) for value in values]
    else:
        order = list(range(len(scanned)))
    blocked: list[BlockedPlan] = []
    for index in order[:BLOCKED_SHOWN]:
        check()
        simulation = domain.simulate(context, scanned[index], settings)
        reason = simulation.reason or "the domain gave no reason"
        blocked.append(BlockedPlan(scanned[index], scores[index], reason))
    return tuple(blocked), len(scanned) if isinstance(domain, ScoresIfAllowed) else 0
