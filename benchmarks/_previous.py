"""The holistic planner's default preset as it was before every trade size was kept (the
highest-priority size per side and symbol, no sizing generator, the correlation filter on,
combinatorial on), and the default with combinatorial on as it was before the sizing
generator made it redundant. Benchmarks plan with them beside the current default, in the
same run."""

from __future__ import annotations

from planforge.portfolio.planner import preset_text

_COMBINATORIAL = (
    "[sequence_generators.combinatorial]\nenabled = false",
    "[sequence_generators.combinatorial]\nenabled = true",
)


def previous_default() -> str:
    return _changed(
        preset_text("default"),
        ("[planner]\n", '[planner]\ncandidate_variants = "best"\n'),
        (
            "[sequence_generators.optimal_sizing]\nenabled = true",
            "[sequence_generators.optimal_sizing]\nenabled = false",
        ),
        (
            "[filters.correlation_aware]\nenabled = false",
            "[filters.correlation_aware]\nenabled = true",
        ),
        _COMBINATORIAL,
    )


def default_with_combinatorial() -> str:
    return _changed(preset_text("default"), _COMBINATORIAL)


def _changed(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        if old not in text:
            raise RuntimeError(f"the default preset changed: {old!r} is not in it")
        text = text.replace(old, new, 1)
    return text
