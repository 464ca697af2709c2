"""Built-in sequence generators: build sequences from the flat candidate list.

Both sort the candidates best first before cutting the list (the original cut first and
lost its best candidates), put sells before buys, never use a symbol twice in a sequence,
and stop at an explicit bound.

Their depth is the engine's: a configuration sets `[planner].max_depth` once and the engine
gives it to every module whose `Params` declares `max_depth` (a module table that sets it
itself is refused, naming the fix). Called directly, a generator takes it as a param.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic.modules import Action, ActionSequence, SequenceGenerator
from planforge.portfolio._common import SELL, action_order, coerce_params, trade_cost
from planforge.portfolio.context import PortfolioContext

__all__ = ["BeamSearchGenerator", "CombinatorialGenerator"]

_PARAMS = ConfigDict(extra="forbid", frozen=True)


def _prepared(candidates: Sequence[Action]) -> list[Action]:
    """Best first, exact duplicates removed. Variants of one trade (same symbol, different
    sizes from different calculators) are kept: each may be the better choice."""
    seen: set[Action] = set()
    out: list[Action] = []
    for action in sorted(candidates, key=action_order):
        if action not in seen:
            seen.add(action)
            out.append(action)
    return out


def _combinations(
    items: Sequence[Action], size: int, taken: frozenset[str]
) -> Iterator[tuple[Action, ...]]:
    """`itertools.combinations(items, size)` in the same lexicographic order, skipping any
    combination that repeats a symbol or uses one in `taken` (pruned as it goes, so repeated
    symbols cost nothing)."""
    if size == 0:
        yield ()
        return
    chosen: list[Action] = []
    keys: list[str] = []

    def walk(start: int) -> Iterator[tuple[Action, ...]]:
        need = size - len(chosen)
        for index in range(start, len(items) - need + 1):
            action = items[index]
            if action.key in taken or action.key in keys:
                continue
            chosen.append(action)
            keys.append(action.key)
            if need == 1:
                yield tuple(chosen)
            else:
                yield from walk(index + 1)
            chosen.pop()
            keys.pop()

    yield from walk(0)


class CombinatorialGenerator(SequenceGenerator):
    """Every combination of k sells followed by j buys, 1 <= k + j <= `max_depth`.

    Candidates are sorted by priority (then side, symbol) BEFORE the list is cut to
    `max_candidates`, so the best candidate always survives, wherever it was listed.
    Sequences come out by length (shortest first), then by number of sells (most first),
    then in lexicographic priority order, and stop at `max_combinations`. Sequences may be
    sells only or buys only; a symbol appears at most once.

    Exhaustive mode: when every subset of the candidates with distinct symbols and at most
    `max_depth` steps numbers at most `exhaustive_limit` (counted exactly, one size of a
    symbol per subset), or when there are at most `exhaustive_below` candidates and
    `max_depth` is at most `exhaustive_max_depth`, neither `max_candidates` nor
    `max_combinations` applies and every such subset is produced (sells first, then buys),
    so the best feasible sequence among the candidates is guaranteed to be among them.
    """

    name = "combinatorial"
    version = "1.0.0"
    author = "planforge"
    description = "All combinations of k sells then j buys over the top candidates."
    tags = ("combinatorial", "exhaustive")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        max_depth: int = Field(
            default=5,
            ge=1,
            le=10,
            description="Most steps per sequence; in a configuration, [planner].max_depth.",
        )
        max_candidates: int = Field(
            default=12, ge=1, le=40, description="Candidates kept after sorting by priority."
        )
        max_combinations: int = Field(
            default=2000, ge=1, le=100_000, description="Most sequences returned."
        )
        exhaustive_below: int = Field(
            default=10,
            ge=0,
            le=16,
            description="With at most this many candidates, enumerate every subset (0: never).",
        )
        exhaustive_max_depth: int = Field(
            default=3, ge=1, le=4, description="Exhaustive mode only up to this depth."
        )
        exhaustive_limit: int = Field(
            default=4096,
            ge=0,
            le=1_000_000,
            description="Enumerate every subset when there are at most this many (0: never).",
        )

    @staticmethod
    def exhaustive(count: int, params: CombinatorialGenerator.Params, subsets: int = -1) -> bool:
        """Whether `count` candidates (making `subsets` subsets, -1: unknown) are enumerated
        completely under these params."""
        if 0 <= subsets <= params.exhaustive_limit:
            return True
        return count <= params.exhaustive_below and params.max_depth <= params.exhaustive_max_depth

    @staticmethod
    def subsets(candidates: Sequence[Action], max_depth: int) -> int:
        """Subsets of 1..max_depth candidates with distinct symbols (one size per symbol)."""
        sizes: dict[str, int] = {}
        for action in candidates:
            sizes[action.key] = sizes.get(action.key, 0) + 1
        counts = [1] + [0] * max_depth  # counts[k]: subsets of k symbols so far
        for variants in sizes.values():
            for k in range(max_depth, 0, -1):
                counts[k] += variants * counts[k - 1]
        return sum(counts[1:])

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences returned for `candidates` candidates (a bound, for dry runs)."""
        p = coerce_params(cls.Params, params)
        depth = min(p.max_depth, max_depth)
        every = sum(math.comb(candidates, k) for k in range(1, depth + 1))
        if cls.exhaustive(candidates, p, every):
            return every
        kept = min(candidates, p.max_candidates)
        total = sum(math.comb(kept, k) for k in range(1, depth + 1))
        return min(total, p.max_combinations)

    def generate(
        self, context: PortfolioContext, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        pool = _prepared(candidates)
        if self.exhaustive(len(pool), p, self.subsets(pool, p.max_depth)):
            limit: int | None = None
        else:
            pool = pool[: p.max_candidates]
            limit = p.max_combinations
        sells = [a for a in pool if a.side == SELL]
        buys = [a for a in pool if a.side != SELL]
        out: list[ActionSequence] = []
        for depth in range(1, p.max_depth + 1):
            for sell_count in range(min(depth, len(sells)), -1, -1):
                buy_count = depth - sell_count
                if buy_count > len(buys):
                    continue
                for sell_part in _combinations(sells, sell_count, frozenset()):
                    taken = frozenset(a.key for a in sell_part)
                    for buy_part in _combinations(buys, buy_count, taken):
                        out.append((*sell_part, *buy_part))
                        if limit is not None and len(out) >= limit:
                            return out
        return out


@dataclass(frozen=True, slots=True)
class _Beam:
    indices: tuple[int, ...]
    keys: frozenset[str]
    last_sell: int
    last_buy: int
    cash: float
    heuristic: float


#: A step a beam state may take: (-heuristic, indices, parent, index, cash after it).
_Step = tuple[float, tuple[int, ...], _Beam, int, float]


class BeamSearchGenerator(SequenceGenerator):
    """Grows sequences one step at a time, keeping the `beam_width` most promising.

    A cheap heuristic ranks partial sequences: the sum of their priorities minus
    `cost_weight` x each trade's cost as a share of its value, so a trade must be worth its
    cost. Sells come before buys, a buy must be payable from the cash at that point
    (starting cash plus net sell proceeds), a symbol appears once, and steps are added in
    candidate order within each side so the same set is never grown twice. Every kept
    sequence at every depth is returned: at most `beam_width` x `max_depth`.
    """

    name = "beam_search"
    version = "1.0.0"
    author = "planforge"
    description = "Beam search over sequences ranked by priority net of trading costs."
    tags = ("beam", "search", "heuristic")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        beam_width: int = Field(default=10, ge=1, le=200, description="Sequences kept per step.")
        max_depth: int = Field(
            default=5,
            ge=1,
            le=10,
            description="Most steps per sequence; in a configuration, [planner].max_depth.",
        )
        max_candidates: int = Field(
            default=24, ge=1, le=200, description="Candidates kept after sorting by priority."
        )
        cost_weight: float = Field(
            default=5.0, ge=0.0, le=100.0, description="Penalty per unit of cost/value ratio."
        )

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences returned (a bound, for dry runs)."""
        p = coerce_params(cls.Params, params)
        depth = min(p.max_depth, max_depth, candidates)
        return p.beam_width * depth

    def generate(
        self, context: PortfolioContext, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        pool = _Pool.of(context, _prepared(candidates)[: p.max_candidates], p.cost_weight)
        beam = [_Beam((), frozenset(), -1, -1, context.cash, 0.0)]
        out: list[ActionSequence] = []
        for _ in range(p.max_depth):
            grown: list[_Step] = []
            for state in beam:
                grown.extend(pool.children(state))
            if not grown:
                break
            grown.sort(key=_rank)  # (-heuristic, indices): unique, so the order is total
            beam = [pool.child(*entry) for entry in grown[: p.beam_width]]
            out.extend(tuple(pool.actions[i] for i in state.indices) for state in beam)
        return out


def _rank(entry: _Step) -> tuple[float, tuple[int, ...]]:
    return entry[0], entry[1]


@dataclass(frozen=True, slots=True)
class _Pool:
    """The beam's candidates with what each step needs computed once: its cost, side, key
    and merit (priority net of `cost_weight` x cost / value)."""

    actions: list[Action]
    costs: list[float]
    sells: list[bool]
    keys: list[str]
    merits: list[float]

    @classmethod
    def of(cls, context: PortfolioContext, actions: list[Action], cost_weight: float) -> _Pool:
        costs = [trade_cost(context, a.value) for a in actions]
        merits = [
            a.priority - cost_weight * (cost / a.value if a.value > 0 else 0.0)
            for a, cost in zip(actions, costs, strict=True)
        ]
        sells = [a.side == SELL for a in actions]
        return cls(actions, costs, sells, [a.key for a in actions], merits)

    def children(self, state: _Beam) -> Iterator[_Step]:
        """Each step `state` may take, as (-heuristic, indices, parent, index, cash); the
        states themselves are built only for those the beam keeps."""
        has_buy = state.last_buy >= 0
        values, costs, sells = self.actions, self.costs, self.sells
        for index, key in enumerate(self.keys):
            if key in state.keys:
                continue
            value, cost = values[index].value, costs[index]
            if sells[index]:
                if has_buy or index <= state.last_sell:
                    continue
                cash = state.cash + value - cost
            else:
                if index <= state.last_buy or value + cost > state.cash + 1e-9:
                    continue
                cash = state.cash - value - cost
            heuristic = state.heuristic + self.merits[index]
            yield -heuristic, (*state.indices, index), state, index, cash

    def child(
        self, negative: float, indices: tuple[int, ...], parent: _Beam, index: int, cash: float
    ) -> _Beam:
        selling = self.sells[index]
        return _Beam(
            indices,
            parent.keys | {self.keys[index]},
            index if selling else parent.last_sell,
            parent.last_buy if selling else index,
            cash,
            -negative,
        )
