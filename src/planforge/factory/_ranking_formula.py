"""The ranking formula in its plain, readable form: `rank()` scores and explains every candidate.

See `planforge.factory._ranking` for the formula; `RankingIndex` must agree with `rank()` bit for
bit, so the sums here are evaluated in exactly the documented order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planforge.contract import ANY_CONTEXT
from planforge.errors import PlannerSelectionError
from planforge.factory._ranking_inputs import Candidate, RankingWeights, SelectionRequest
from planforge.factory._ranking_outputs import Exclusion, ScoreBreakdown, Selection
from planforge.factory._ranking_terms import objective_terms, planner_terms

__all__ = [
    "CAPABILITY_WEIGHT",
    "DEEP_INDEX_CAPABILITY",
    "HOTSPOT_CAPABILITIES",
    "NON_PRODUCTION_FACTOR",
    "PRODUCTION_BONUS",
    "RELIABILITY_WEIGHT",
    "TIER_BONUS",
    "DeepFlags",
    "check_unique",
    "deep_flags",
    "hotspots_count_of",
    "kind_mismatch",
    "rank",
]

CAPABILITY_WEIGHT = 0.6
RELIABILITY_WEIGHT = 0.35
PRODUCTION_BONUS = 0.04
NON_PRODUCTION_FACTOR = 0.97
TIER_BONUS: Mapping[str, float] = {
    "alpha": -0.05,
    "beta": 0.0,
    "stable": 0.05,
    "gold": 0.07,
    "vip": 0.08,
}
DEEP_INDEX_CAPABILITY = "deep_index"
HOTSPOT_CAPABILITIES: tuple[str, ...] = ("refactor", "risk", "structural")


def hotspots_count_of(deep_context: Mapping[str, Any] | None) -> int | float | None:
    """`hotspots_count` as a number, or None when it is missing or malformed."""
    if deep_context is None:
        return None
    value = deep_context.get("hotspots_count")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if digits.isascii() and digits.isdigit():
            return int(text)
    return None


@dataclass(frozen=True, slots=True)
class DeepFlags:
    deep_index: bool
    hotspots: bool


def deep_flags(request: SelectionRequest, weights: RankingWeights) -> DeepFlags:
    context = request.deep_context
    if context is None:
        return DeepFlags(False, False)
    count = hotspots_count_of(context)
    return DeepFlags(
        deep_index=context.get("deep_index_summary") is not None,
        hotspots=count is not None and count > weights.hotspot_threshold,
    )


def _breakdown(
    candidate: Candidate,
    request: SelectionRequest,
    weights: RankingWeights,
    deep: DeepFlags,
    wanted_terms: frozenset[str],
) -> ScoreBreakdown:
    spec = candidate.spec
    offered = set(spec.capabilities)
    required = request.required_capabilities
    if required:
        matched = sum(1 for capability in required if capability in offered)
        capability_match = matched / len(required)
    else:
        capability_match = 1.0
    reliability = float(candidate.reliability)
    penalised = request.prefer_production and not spec.production_ready and bool(required)
    reliability_used = reliability * NON_PRODUCTION_FACTOR if penalised else reliability
    production_bonus = PRODUCTION_BONUS if spec.production_ready else 0.0
    tier_bonus = TIER_BONUS.get(spec.tier, 0.0)
    static = production_bonus + tier_bonus
    base = (CAPABILITY_WEIGHT * capability_match + RELIABILITY_WEIGHT * reliability_used) + static
    deep_index_boost = (
        weights.deep_index_cap_boost
        if deep.deep_index and DEEP_INDEX_CAPABILITY in offered
        else 0.0
    )
    hotspot_boost = (
        weights.hotspot_cap_boost
        if deep.hotspots and any(cap in offered for cap in HOTSPOT_CAPABILITIES)
        else 0.0
    )
    if wanted_terms:
        shared = len(wanted_terms & planner_terms(spec))
        relevance = shared / len(wanted_terms)
    else:
        relevance = 0.0
    objective_term = weights.objective_weight * relevance
    total = base + deep_index_boost + hotspot_boost + objective_term
    return ScoreBreakdown(
        name=spec.name,
        capability_match=capability_match,
        reliability=reliability,
        reliability_used=reliability_used,
        production_bonus=production_bonus,
        tier_bonus=tier_bonus,
        objective_relevance=relevance,
        objective_term=objective_term,
        deep_index_boost=deep_index_boost,
        hotspot_boost=hotspot_boost,
        base=base,
        total=total,
    )


def _below_minimum(reliability: float, weights: RankingWeights) -> str:
    return f"below minimum reliability ({reliability:.4g} < {weights.min_reliability:g})"


def _missing(required: Sequence[str], offered: Iterable[str]) -> str:
    have = set(offered)
    return "missing capabilities: " + ", ".join(cap for cap in required if cap not in have)


def kind_mismatch(declared: str, wanted: str) -> str | None:
    """Why a planner that reads `declared` contexts cannot take a `wanted` one, or None."""
    if declared in (wanted, ANY_CONTEXT):
        return None
    if wanted == ANY_CONTEXT:
        return f"reads {declared!r} contexts; this context is of no known kind"
    return f"reads {declared!r} contexts, not {wanted!r}"


def check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise PlannerSelectionError(
                f"two candidates are named {name!r}; planner names must be unique per ranking.",
                where="selection",
                context={"planner_name": name},
            )
        seen.add(name)


def rank(
    candidates: Sequence[Candidate],
    request: SelectionRequest,
    weights: RankingWeights,
    excluded: Mapping[str, str] | None = None,
) -> Selection:
    """Score every candidate the caller did not exclude; pure and deterministic.

    One reason per excluded planner, first that applies: the caller's reason (quarantined, not
    allowed, breaker open, ...), then a context of another kind, then below minimum
    reliability, then (strict only) missing capabilities. The caller's exclusions are
    reported even for names not among candidates.
    """
    excluded = excluded or {}
    check_unique(candidate.spec.name for candidate in candidates)
    deep = deep_flags(request, weights)
    wanted = objective_terms(request.objective)
    required = request.required_capabilities
    kind = request.context_kind
    reasons: dict[str, str] = dict(excluded)
    scores: list[ScoreBreakdown] = []
    for candidate in candidates:
        name = candidate.spec.name
        if name in reasons:
            continue
        mismatch = None if kind is None else kind_mismatch(candidate.spec.context_kind, kind)
        if mismatch is not None:
            reasons[name] = mismatch
            continue
        if candidate.reliability < weights.min_reliability:
            reasons[name] = _below_minimum(candidate.reliability, weights)
            continue
        if request.strict and not set(required).issubset(candidate.spec.capabilities):
            reasons[name] = _missing(required, candidate.spec.capabilities)
            continue
        scores.append(_breakdown(candidate, request, weights, deep, wanted))
    scores.sort(key=lambda score: (-score.total, -score.reliability, score.name))
    exclusions = tuple(Exclusion(name, reasons[name]) for name in sorted(reasons))
    if not scores:
        return Selection(None, None, (), exclusions)
    return Selection(scores[0].name, scores[0].total, tuple(scores), exclusions)
