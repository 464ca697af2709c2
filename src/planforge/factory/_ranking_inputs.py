"""What selection reads: the request (validated once), the candidates and the weights."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planforge.contract import PlannerSpec, is_context_kind
from planforge.errors import PlannerSelectionError

if TYPE_CHECKING:
    from planforge.settings import FactorySettings

__all__ = ["Candidate", "RankingWeights", "SelectionRequest", "check_reliability"]


def _normalise_capabilities(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise PlannerSelectionError(
            f"required_capabilities must be a sequence of capability names, got the single "
            f"string {value!r}; pass ({value!r},) instead.",
            where="selection",
        )
    if not isinstance(value, Iterable):
        raise PlannerSelectionError(
            f"required_capabilities must be a sequence of strings, got {type(value).__name__}.",
            where="selection",
        )
    items = list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise PlannerSelectionError(
                f"every required capability must be a non-empty string, got {item!r}; "
                "fix the capability list of the request.",
                where="selection",
            )
    return tuple(sorted(set(items)))


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    """What the caller wants: validated and normalised once, then read by every scorer."""

    objective: str
    required_capabilities: tuple[str, ...] = ()
    prefer_production: bool = True
    deep_context: Mapping[str, Any] | None = None
    strict: bool = False
    context_kind: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.objective, str):
            raise PlannerSelectionError(
                f"objective must be a string, got {type(self.objective).__name__}; "
                "describe what the plan should achieve as text.",
                where="selection",
            )
        object.__setattr__(
            self, "required_capabilities", _normalise_capabilities(self.required_capabilities)
        )
        for flag in ("prefer_production", "strict"):
            if not isinstance(getattr(self, flag), bool):
                raise PlannerSelectionError(
                    f"{flag} must be True or False, got {getattr(self, flag)!r}.",
                    where="selection",
                )
        if self.deep_context is not None and not isinstance(self.deep_context, Mapping):
            raise PlannerSelectionError(
                f"deep_context must be a mapping or None, got {type(self.deep_context).__name__}.",
                where="selection",
            )
        if self.context_kind is not None and not is_context_kind(self.context_kind):
            raise PlannerSelectionError(
                f"context_kind must be a context kind such as 'portfolio' (an identifier), "
                f"or None, got {self.context_kind!r}.",
                where="selection",
            )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A planner's record plus its current reliability (prior updated by observed outcomes)."""

    spec: PlannerSpec
    reliability: float

    def __post_init__(self) -> None:
        check_reliability(self.spec.name, self.reliability)


def check_reliability(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise PlannerSelectionError(
            f"reliability of planner {name!r} must be a number in [0, 1], got {value!r}.",
            where="selection",
            context={"planner_name": name},
        )


@dataclass(frozen=True, slots=True)
class RankingWeights:
    """The tunable knobs of the formula, taken from `FactorySettings`."""

    min_reliability: float = 0.25
    objective_weight: float = 0.2
    deep_index_cap_boost: float = 0.05
    hotspot_cap_boost: float = 0.03
    hotspot_threshold: int = 8

    @classmethod
    def from_settings(cls, settings: FactorySettings) -> RankingWeights:
        return cls(
            min_reliability=settings.min_reliability,
            objective_weight=settings.objective_weight,
            deep_index_cap_boost=settings.deep_index_cap_boost,
            hotspot_cap_boost=settings.hotspot_cap_boost,
            hotspot_threshold=settings.hotspot_threshold,
        )
