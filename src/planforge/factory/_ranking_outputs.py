"""What selection answers: the winner, each candidate's score terms, each exclusion's reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exclusion", "ScoreBreakdown", "Selection"]


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """Every term of one candidate's score, so a user can see why it won or lost."""

    name: str
    capability_match: float
    reliability: float
    reliability_used: float
    production_bonus: float
    tier_bonus: float
    objective_relevance: float
    objective_term: float
    deep_index_boost: float
    hotspot_boost: float
    base: float
    total: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capability_match": self.capability_match,
            "reliability": self.reliability,
            "reliability_used": self.reliability_used,
            "production_bonus": self.production_bonus,
            "tier_bonus": self.tier_bonus,
            "objective_relevance": self.objective_relevance,
            "objective_term": self.objective_term,
            "deep_index_boost": self.deep_index_boost,
            "hotspot_boost": self.hotspot_boost,
            "base": self.base,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class Exclusion:
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Selection:
    """The winner (None when nothing is selectable), all scores best first, all exclusions."""

    winner: str | None
    winner_score: float | None
    scores: tuple[ScoreBreakdown, ...]
    exclusions: tuple[Exclusion, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "winner_score": self.winner_score,
            "scores": [score.to_dict() for score in self.scores],
            "exclusions": [exclusion.to_dict() for exclusion in self.exclusions],
        }
