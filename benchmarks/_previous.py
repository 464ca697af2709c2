"""The holistic planner's default preset as it was before every trade size was kept: the
highest-priority size per side and symbol, no sizing generator, the correlation filter on.
Benchmarks plan with it beside the current default, in the same run."""

from __future__ import annotations

from planforge.portfolio.planner import preset_text


def previous_default() -> str:
    text = preset_text("default")
    for old, new in (
        ("[planner]\n", '[planner]\ncandidate_variants = "best"\n'),
        (
            "[sequence_generators.optimal_sizing]\nenabled = true",
            "[sequence_generators.optimal_sizing]\nenabled = false",
        ),
        (
            "[filters.correlation_aware]\nenabled = false",
            "[filters.correlation_aware]\nenabled = true",
        ),
    ):
        if old not in text:
            raise RuntimeError(f"the default preset changed: {old!r} is not in it")
        text = text.replace(old, new, 1)
    return text
