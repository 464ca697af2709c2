"""Selection math: score planner candidates for a request, explain every score and exclusion.

The formula keeps the original factory's default and adds objective relevance::

    match     = |required ∩ offered| / |required|          (1.0 when nothing is required)
    r_used    = r * 0.97   if prefer_production and not production_ready and capabilities
                           are required, else r
    static    = production_bonus (0.04 if production_ready) + tier_bonus
    base      = (0.6 * match + 0.35 * r_used) + static
    total     = base + deep_index_boost + hotspot_boost + objective_weight * relevance

Floating point sums are always evaluated in exactly this order, so `rank()` (the plain,
readable version) and `RankingIndex` (the precompiled fast path) give bit-identical totals.
Ties break by (-total, -raw reliability, name): the same inputs give the same winner in every
process, since nothing here hashes strings into an order or iterates a set into a result.

Objective relevance is the share of the objective's distinct terms found among the planner's
terms (words of its name, keywords, capabilities and description). A term is a lowercased run
of letters and digits, minus a small stopword list, reduced by `stem()`, a deliberately light
suffix stripper (not a linguistic stemmer) applied identically on both sides.

A request may name the kind of its context (`context_kind`): a planner that declares another
kind (neither that one nor "any") is excluded, with the reason. The index keeps one row list
per declared kind, so this costs a dictionary lookup per request, not work per candidate.

`hotspots_count` in the deep context counts when it is an int, a finite float, or a string
holding a base-10 integer (``"12"``); anything else (None, ``"abc"``, a list, NaN, a bool) is
treated as absent: no boost, never an error.
"""

from __future__ import annotations

from planforge.factory._ranking_formula import (
    CAPABILITY_WEIGHT,
    HOTSPOT_CAPABILITIES,
    NON_PRODUCTION_FACTOR,
    PRODUCTION_BONUS,
    RELIABILITY_WEIGHT,
    TIER_BONUS,
    hotspots_count_of,
    kind_mismatch,
    rank,
)
from planforge.factory._ranking_index import RankingIndex
from planforge.factory._ranking_inputs import Candidate, RankingWeights, SelectionRequest
from planforge.factory._ranking_outputs import Exclusion, ScoreBreakdown, Selection
from planforge.factory._ranking_terms import STOPWORDS, objective_terms, planner_terms, stem

__all__ = [
    "CAPABILITY_WEIGHT",
    "HOTSPOT_CAPABILITIES",
    "NON_PRODUCTION_FACTOR",
    "PRODUCTION_BONUS",
    "RELIABILITY_WEIGHT",
    "STOPWORDS",
    "TIER_BONUS",
    "Candidate",
    "Exclusion",
    "RankingIndex",
    "RankingWeights",
    "ScoreBreakdown",
    "Selection",
    "SelectionRequest",
    "hotspots_count_of",
    "kind_mismatch",
    "objective_terms",
    "planner_terms",
    "rank",
    "stem",
]
