"""`RankingIndex`: the candidates precompiled into bitmasks for fast repeated selection."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from planforge.contract import ANY_CONTEXT, PlannerSpec
from planforge.errors import PlannerNotFound, PlannerSelectionError
from planforge.factory._ranking_formula import (
    CAPABILITY_WEIGHT,
    DEEP_INDEX_CAPABILITY,
    HOTSPOT_CAPABILITIES,
    NON_PRODUCTION_FACTOR,
    PRODUCTION_BONUS,
    RELIABILITY_WEIGHT,
    TIER_BONUS,
    check_unique,
    deep_flags,
    rank,
)
from planforge.factory._ranking_inputs import (
    Candidate,
    RankingWeights,
    SelectionRequest,
    check_reliability,
)
from planforge.factory._ranking_outputs import Selection
from planforge.factory._ranking_terms import objective_terms, planner_terms

__all__ = ["RankingIndex"]


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
        check_unique(candidate.spec.name for candidate in candidates)
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
        check_reliability(name, value)
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
        deep = deep_flags(request, weights)
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
