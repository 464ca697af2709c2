"""An upper bound on the sequences a configuration would evaluate, for dry runs."""

from __future__ import annotations

from pydantic import BaseModel

from planforge.holistic._models import HolisticConfig
from planforge.holistic.modules import HolisticModule

__all__ = ["estimate_sequences"]


def _ordered_sequences(candidates: int, max_depth: int, cap: int) -> int:
    """Ordered selections of 1..max_depth distinct candidates, stopping once past `cap`."""
    total = 0
    term = 1
    for depth in range(1, max_depth + 1):
        if depth > candidates:
            break
        term *= candidates - depth + 1
        total += term
        if total >= cap:
            return cap
    return total


def _declared_bound(
    cls: type[HolisticModule] | None, params: BaseModel, **facts: int
) -> int | None:
    """A module's own `estimate_output(params, candidates=..., max_depth=...)`, if it has one."""
    hook = getattr(cls, "estimate_output", None)
    if not callable(hook):
        return None
    try:
        value = hook(params, **facts)
    except Exception:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def estimate_sequences(config: HolisticConfig, candidates_per_category: int) -> int:
    """An upper bound on the sequences a run would evaluate, for dry runs.

    Candidates: `min(calculators * min(candidates_per_category, max_opportunities_per_category),
    max_candidates)`. Each pattern generator adds at most `max_patterns_per_generator`; each
    sequence generator at most `max_sequences`, or the ordered selections of up to `max_depth`
    candidates if fewer. A module may declare a tighter bound with a classmethod
    `estimate_output(params, *, candidates, max_depth) -> int`. The total is capped at
    `max_sequences`, the bound on the evaluated batch.
    """
    settings = config.planner
    calculators = len(config.enabled("opportunity_calculators"))
    if calculators == 0 or candidates_per_category <= 0:
        return 0
    per_category = min(candidates_per_category, settings.max_opportunities_per_category)
    candidates = min(calculators * per_category, settings.max_candidates)
    facts = {"candidates": candidates, "max_depth": settings.max_depth}
    total = 0
    for _, cls, params in config.enabled_classes("pattern_generators"):
        bound = settings.max_patterns_per_generator
        declared = _declared_bound(cls, params, **facts)
        total += bound if declared is None else min(bound, declared)
    for _, cls, params in config.enabled_classes("sequence_generators"):
        bound = _ordered_sequences(candidates, settings.max_depth, settings.max_sequences)
        declared = _declared_bound(cls, params, **facts)
        total += bound if declared is None else min(bound, declared)
    return min(total, settings.max_sequences)
