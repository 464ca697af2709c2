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

import heapq
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from planforge.contract import ANY_CONTEXT, PlannerSpec, is_context_kind
from planforge.errors import PlannerNotFound, PlannerSelectionError

if TYPE_CHECKING:
    from planforge.settings import FactorySettings

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
STOPWORDS: frozenset[str] = frozenset(
    {
        "a", "an", "and", "as", "at", "be", "by", "for", "from", "i", "in", "is", "it", "me",
        "my", "of", "on", "or", "our", "please", "the", "this", "to", "us", "we", "with", "your",
    }
)  # fmt: skip

_OBJECTIVE_CACHE_SIZE = 4096
_PLANNER_CACHE_SIZE = 8192
_WORD = re.compile(r"[a-z0-9]+")


# ---------------------------------------------------------------------------------------------
# Terms


def stem(word: str) -> str:
    """Strip one plural and one verb/agent suffix so "rebalance", "rebalancing" and
    "rebalancer" meet; crude on purpose, and harmless because both sides use it."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed", "er"):
        if len(word) >= len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
                word = word[:-1]  # planning -> plann -> plan
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def _terms(texts: Iterable[str]) -> frozenset[str]:
    found: set[str] = set()
    for text in texts:
        for word in _WORD.findall(text.lower()):
            if word not in STOPWORDS:
                found.add(stem(word))
    return frozenset(found)


@lru_cache(maxsize=_OBJECTIVE_CACHE_SIZE)
def objective_terms(objective: str) -> frozenset[str]:
    """The objective's distinct terms (cached: the same objectives come back often)."""
    return _terms((objective,))


@lru_cache(maxsize=_PLANNER_CACHE_SIZE)
def planner_terms(spec: PlannerSpec) -> frozenset[str]:
    """Terms a planner answers to: its name, keywords, capabilities and description.

    Cached per spec (specs are frozen; the cache is looked up, never iterated)."""
    return _terms((spec.name, *spec.keywords, *spec.capabilities, spec.description))


# ---------------------------------------------------------------------------------------------
# Inputs


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
        _check_reliability(self.spec.name, self.reliability)


def _check_reliability(name: str, value: Any) -> None:
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


# ---------------------------------------------------------------------------------------------
# Outputs


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


# ---------------------------------------------------------------------------------------------
# The plain ranking


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
class _DeepFlags:
    deep_index: bool
    hotspots: bool


def _deep_flags(request: SelectionRequest, weights: RankingWeights) -> _DeepFlags:
    context = request.deep_context
    if context is None:
        return _DeepFlags(False, False)
    count = hotspots_count_of(context)
    return _DeepFlags(
        deep_index=context.get("deep_index_summary") is not None,
        hotspots=count is not None and count > weights.hotspot_threshold,
    )


def _breakdown(
    candidate: Candidate,
    request: SelectionRequest,
    weights: RankingWeights,
    deep: _DeepFlags,
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


def _check_unique(names: Iterable[str]) -> None:
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
    _check_unique(candidate.spec.name for candidate in candidates)
    deep = _deep_flags(request, weights)
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


# ---------------------------------------------------------------------------------------------
# The precompiled fast path


@dataclass(slots=True)
class _Entry:
    """One candidate, precompiled: everything that does not depend on the request."""

    spec: PlannerSpec
    reliability: float
    static: float  # production bonus + tier bonus, in the formula's order
    base_without_caps: float  # base when nothing is required: (0.6 + 0.35 r) + static
    production_ready: bool
    capability_mask: int
    term_mask: int
    deep_index: bool
    hotspot: bool


# A row of the hot loop: (name, reliability, static, base_without_caps, capability_mask,
# term_mask, production_ready, deep_index, hotspot). Tuples unpack faster than attributes.
_Row = tuple[str, float, float, float, int, int, bool, bool, bool]


def _row(entry: _Entry) -> _Row:
    return (
        entry.spec.name,
        entry.reliability,
        entry.static,
        entry.base_without_caps,
        entry.capability_mask,
        entry.term_mask,
        entry.production_ready,
        entry.deep_index,
        entry.hotspot,
    )


class RankingIndex:
    """Candidates precompiled once (per registry generation) for fast repeated selection.

    Capabilities and planner terms become bitmasks over a vocabulary, so a request costs one
    cached tokenisation plus a few integer and float operations per candidate. `best`, `top`
    and `explain` give exactly what `rank()` gives for the same state.

    Reads take no lock: writers (`set_reliability`, `set_excluded`) serialise on a lock and
    publish each change by replacing a list item or swapping a whole list, so a concurrent
    reader sees every candidate either before or after a change, never half of one.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        weights: RankingWeights,
        excluded: Mapping[str, str] | None = None,
        *,
        objective_cache_size: int = 1024,
    ) -> None:
        _check_unique(candidate.spec.name for candidate in candidates)
        self._weights = weights
        self._lock = threading.Lock()
        self._excluded: dict[str, str] = dict(excluded or {})
        capabilities = sorted({cap for c in candidates for cap in c.spec.capabilities})
        self._capability_bits = {cap: 1 << i for i, cap in enumerate(capabilities)}
        spec_terms = {c.spec.name: planner_terms(c.spec) for c in candidates}
        vocabulary = sorted({term for terms in spec_terms.values() for term in terms})
        self._term_bits = {term: 1 << i for i, term in enumerate(vocabulary)}
        hotspot_caps = set(HOTSPOT_CAPABILITIES)
        self._entries: dict[str, _Entry] = {}
        for candidate in sorted(candidates, key=lambda c: c.spec.name):
            spec = candidate.spec
            entry = _Entry(
                spec=spec,
                reliability=0.0,
                static=(PRODUCTION_BONUS if spec.production_ready else 0.0)
                + TIER_BONUS.get(spec.tier, 0.0),
                base_without_caps=0.0,
                production_ready=spec.production_ready,
                capability_mask=self._mask(self._capability_bits, spec.capabilities),
                term_mask=self._mask(self._term_bits, spec_terms[spec.name]),
                deep_index=DEEP_INDEX_CAPABILITY in spec.capabilities,
                hotspot=not hotspot_caps.isdisjoint(spec.capabilities),
            )
            self._set_entry_reliability(entry, candidate.reliability)
            self._entries[spec.name] = entry
        self._rows: list[_Row] = []
        self._positions: dict[str, int] = {}
        # per context kind: the rows of planners that read it (theirs and "any"), positions
        self._views: dict[str, list[_Row]] = {}
        self._view_positions: dict[str, dict[str, int]] = {}
        self._rebuild_rows()
        self._objective_mask: Callable[[str], tuple[int, int]] = lru_cache(
            maxsize=objective_cache_size
        )(self._compute_objective_mask)

    # -- state ------------------------------------------------------------------------------

    @staticmethod
    def _mask(bits: Mapping[str, int], names: Iterable[str]) -> int:
        mask = 0
        for name in names:
            mask |= bits.get(name, 0)
        return mask

    def _set_entry_reliability(self, entry: _Entry, value: float) -> None:
        entry.reliability = float(value)
        entry.base_without_caps = (
            CAPABILITY_WEIGHT * 1.0 + RELIABILITY_WEIGHT * entry.reliability
        ) + entry.static

    def _eligible(self, entry: _Entry) -> bool:
        return (
            entry.spec.name not in self._excluded
            and entry.reliability >= self._weights.min_reliability
        )

    def _rebuild_rows(self) -> None:
        rows = [_row(e) for e in self._entries.values() if self._eligible(e)]
        kinds = sorted({e.spec.context_kind for e in self._entries.values()} | {ANY_CONTEXT})
        views: dict[str, list[_Row]] = {kind: [] for kind in kinds}
        for row in rows:
            kind = self._entries[row[0]].spec.context_kind
            for view in views.values() if kind == ANY_CONTEXT else (views[kind],):
                view.append(row)
        self._view_positions = {
            kind: {row[0]: i for i, row in enumerate(view)} for kind, view in views.items()
        }
        self._views = views
        self._positions = {row[0]: i for i, row in enumerate(rows)}
        self._rows = rows

    def _replace_row(self, entry: _Entry) -> None:
        """Publish an eligible entry's new row in place, in every view that holds it."""
        row = _row(entry)
        name = row[0]
        self._rows[self._positions[name]] = row
        kind = entry.spec.context_kind
        for view_kind in self._views if kind == ANY_CONTEXT else (kind,):
            self._views[view_kind][self._view_positions[view_kind][name]] = row

    def _rows_for(self, kind: str | None) -> list[_Row]:
        """The eligible rows, or only those of planners that read `kind` contexts."""
        if kind is None:
            return self._rows
        rows = self._views.get(kind)
        return self._views[ANY_CONTEXT] if rows is None else rows

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise PlannerNotFound(name, tuple(self._entries))
        return entry

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    @property
    def weights(self) -> RankingWeights:
        return self._weights

    def excluded(self) -> dict[str, str]:
        return dict(sorted(self._excluded.items()))

    def reliability(self, name: str) -> float:
        return self._entry(name).reliability

    def candidates(self) -> list[Candidate]:
        """The candidates as they stand now (current reliabilities), sorted by name."""
        return [Candidate(e.spec, e.reliability) for e in self._entries.values()]

    def set_reliability(self, name: str, value: float) -> None:
        """Record a planner's new current reliability; may move it across the minimum."""
        _check_reliability(name, value)
        with self._lock:
            entry = self._entry(name)
            was = self._eligible(entry)
            self._set_entry_reliability(entry, value)
            if was != self._eligible(entry):
                self._rebuild_rows()
            elif was:
                self._replace_row(entry)

    def set_excluded(self, name: str, reason: str | None) -> None:
        """Exclude a planner with a reason (breaker open, quarantined...), or None to readmit.

        Names unknown to the index are accepted so the explanation can report them.
        """
        if reason is not None and not isinstance(reason, str):
            raise PlannerSelectionError(
                f"an exclusion reason must be a string or None, got {reason!r}.",
                where="selection",
            )
        with self._lock:
            if reason is None:
                self._excluded.pop(name, None)
            else:
                self._excluded[name] = reason
            if name in self._entries:
                self._rebuild_rows()

    # -- queries ----------------------------------------------------------------------------

    def _compute_objective_mask(self, objective: str) -> tuple[int, int]:
        terms = objective_terms(objective)
        return self._mask(self._term_bits, terms), len(terms)

    def _scored(self, request: SelectionRequest) -> list[tuple[float, float, str]]:
        """(total, reliability, name) of every selectable candidate, in row order."""
        weights = self._weights
        object_mask, term_count = self._objective_mask(request.objective)
        required = request.required_capabilities
        deep = _deep_flags(request, weights)
        w = weights.objective_weight
        out: list[tuple[float, float, str]] = []
        append = out.append
        rows = self._rows_for(request.context_kind)
        if not required and not deep.deep_index and not deep.hotspots:
            if not object_mask:
                # No objective term is known to any candidate: relevance is 0 everywhere.
                return [(row[3], row[1], row[0]) for row in rows]
            for name, r, _s, base, _c, term_mask, _p, _d, _h in rows:
                common = object_mask & term_mask
                if common:
                    append((base + w * (common.bit_count() / term_count), r, name))
                else:
                    append((base, r, name))
            return out
        required_mask = self._mask(self._capability_bits, required)
        required_count = len(required)
        strict = request.strict
        penalise = request.prefer_production and bool(required)
        deep_boost = weights.deep_index_cap_boost if deep.deep_index else 0.0
        hot_boost = weights.hotspot_cap_boost if deep.hotspots else 0.0
        for name, r, static, base, caps, term_mask, prod, has_deep, has_hot in rows:
            if required:
                matched = (required_mask & caps).bit_count()
                if strict and matched != required_count:
                    continue
                used = r * NON_PRODUCTION_FACTOR if penalise and not prod else r
                total = (
                    CAPABILITY_WEIGHT * (matched / required_count) + RELIABILITY_WEIGHT * used
                ) + static
            else:
                total = base
            if has_deep:
                total = total + deep_boost
            if has_hot:
                total = total + hot_boost
            common = object_mask & term_mask
            if common:
                total = total + w * (common.bit_count() / term_count)
            append((total, r, name))
        return out

    def best(self, request: SelectionRequest) -> tuple[str, float] | None:
        """The winner's name and total, or None when no candidate is selectable."""
        scored = self._scored(request)
        if not scored:
            return None
        best_total, best_r, best_name = scored[0]
        for total, r, name in scored:
            if total > best_total or (
                total == best_total and (r > best_r or (r == best_r and name < best_name))
            ):
                best_total, best_r, best_name = total, r, name
        return best_name, best_total

    def top(self, request: SelectionRequest, n: int) -> list[tuple[str, float]]:
        """The n best (name, total), best first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PlannerSelectionError(
                f"n must be a non-negative integer, got {n!r}.", where="selection"
            )
        scored = self._scored(request)
        chosen = heapq.nsmallest(n, scored, key=lambda item: (-item[0], -item[1], item[2]))
        return [(name, total) for total, _r, name in chosen]

    def explain(self, request: SelectionRequest) -> Selection:
        """The full explanation; identical to `rank()` over the current state."""
        with self._lock:  # a consistent picture while a writer may be excluding a planner
            candidates = self.candidates()
            excluded = dict(self._excluded)
        return rank(candidates, request, self._weights, excluded)
