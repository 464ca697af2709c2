"""How the engine gathers sequences: what counts as one sequence, taking a generator's output
up to the bounds, and keeping only what a filter kept of what it was given."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from planforge.holistic._explain import GeneratorReport
from planforge.holistic.modules import ActionSequence

__all__ = ["Sequences", "only_dropped", "sequence_key", "take"]

Sequences = list[ActionSequence]

_step_key = attrgetter("side", "key", "quantity")


def sequence_key(sequence: ActionSequence) -> tuple[tuple[str, str, float], ...]:
    """Two sequences are one when they make the same trades in the same sizes (the same buy
    in two sizes is two plans: the engine keeps both)."""
    return tuple(map(_step_key, sequence))


def take(
    produced: Sequence[ActionSequence],
    cap: int,
    limit: int,
    seen: set[tuple[tuple[str, str, float], ...]],
    sequences: Sequences,
    module: str,
) -> GeneratorReport:
    """Add a generator's first `cap` sequences that are new (not empty, not made before) to
    `sequences`, up to `limit` in all; the counts say what became of each one."""
    produced = list(produced)
    new = repeated = 0
    for sequence in produced[:cap]:
        if len(sequences) >= limit:
            break
        sequence = tuple(sequence)
        key = sequence_key(sequence)
        if sequence and key not in seen:
            seen.add(key)
            sequences.append(sequence)
            new += 1
        else:
            repeated += 1
    return GeneratorReport(module, len(produced), new, repeated, len(produced) - new - repeated)


def only_dropped(given: Sequences, kept: Sequence[ActionSequence]) -> Sequences:
    """What a filter kept of `given`, in its order: a filter only drops, so anything it
    invented or repeated is ignored. Filters hand back the sequences they were given, so
    identity decides first and the trades are compared only for a sequence that is a copy."""
    by_id = {id(sequence): sequence for sequence in given}
    keys: set[tuple[tuple[str, str, float], ...]] | None = None
    seen: set[int] = set()
    out: Sequences = []
    for sequence in kept:
        known = by_id.get(id(sequence))
        if known is None:
            if keys is None:
                keys = {sequence_key(s) for s in given}
            candidate = tuple(sequence)
            if sequence_key(candidate) not in keys:
                continue
            known = next(s for s in given if sequence_key(s) == sequence_key(candidate))
        if id(known) not in seen:
            seen.add(id(known))
            out.append(known)
    return out
