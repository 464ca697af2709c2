"""The scoring kernel: a batch of sequences as a depth x batch matrix of action rows, scored
with a few array operations per step (the score is defined in
`planforge.portfolio.evaluation`).

The allocation terms of untouched groups depend on the sequence only through 1/T, a convex
piecewise-linear function evaluated with one binary search (`_targets`); the touched groups
are corrected step by step. Batches run in chunks of `evaluation_chunk_size` sequences to
bound memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from planforge.holistic.modules import Action, ActionSequence
from planforge.portfolio._arrays import BoolArray, FloatArray, IntArray
from planforge.portfolio._model import (
    COST,
    DS2,
    DSQ,
    DV,
    FLOW,
    LINEAR_COLUMNS,
    ActionTable,
    PortfolioModel,
)
from planforge.portfolio._settings import PortfolioSettings
from planforge.portfolio._targets import TargetSet

__all__ = ["INVESTED_EPSILON", "ScoreDetail", "evaluate_sequences", "score_detail"]

#: Invested value below this share of the total counts as nothing invested.
INVESTED_EPSILON = 1e-9
_TINY = float(np.finfo(np.float64).tiny)


@dataclass(frozen=True, slots=True)
class ScoreDetail:
    """Per-sequence score components of one batch (all aligned with the batch)."""

    scores: FloatArray
    feasible: BoolArray
    costs: FloatArray
    allocation_fit: FloatArray
    diversification: FloatArray
    quality: FloatArray
    cost_penalty: FloatArray
    set_fits: Mapping[str, FloatArray]
    cash_after: FloatArray
    total_value: FloatArray
    invested: FloatArray
    #: Cash after each step (steps x batch); row 0 is the cash before trading.
    cash_path: FloatArray
    #: The score each row would have if no rule refused it (`scores` is -inf where one did):
    #: what explanations report for the closest blocked plan.
    allowed_scores: FloatArray


def _rows_of(table: ActionTable, steps: Iterable[Action], total: int) -> IntArray:
    """The table row of each step, in order (KeyError for an action the table lacks).

    The steps go into an object array in one C loop; in CPython an object's id is its
    address, which is what that array holds, so the ids come out as integers without a
    Python call per step and are found in the table's address index.
    """
    if not _IDS_ARE_ADDRESSES:
        rows = map(table.index.__getitem__, map(id, steps))
        return np.fromiter(rows, dtype=np.intp, count=total)
    objects = np.fromiter(steps, dtype=object, count=total)
    return table.addresses.rows_of(np.frombuffer(objects, dtype=np.intp))


def _encode(table: ActionTable, sequences: Sequence[ActionSequence]) -> IntArray:
    """Steps x batch matrix of table rows; 0 (no-op) pads shorter sequences."""
    count = len(sequences)
    lengths = np.fromiter(map(len, sequences), dtype=np.intp, count=count)
    total = int(lengths.sum())
    depth = int(lengths.max()) if count else 0
    flat = _rows_of(table, chain.from_iterable(sequences), total)
    if total == depth * count:
        return np.ascontiguousarray(flat.reshape(count, depth).T)
    codes = np.zeros((count, depth), dtype=np.intp)
    codes[np.arange(depth)[None, :] < lengths[:, None]] = flat
    return np.ascontiguousarray(codes.T)


def _ids_are_addresses() -> bool:
    """Whether an object array's buffer holds each object's id (CPython's rule)."""
    probe = (object(), object())
    try:
        held = np.fromiter(probe, dtype=object, count=2)
        addresses: list[int] = np.frombuffer(held, dtype=np.intp).tolist()
        return addresses == [id(o) for o in probe]
    except (TypeError, ValueError):
        return False


_IDS_ARE_ADDRESSES = _ids_are_addresses()


def _repeats(table: ActionTable, codes: IntArray, model: PortfolioModel) -> BoolArray:
    """Rows that name a security twice: a bit mask first, exact pairs only where it may clash."""
    depth, count = codes.shape
    seen = np.zeros(count, dtype=np.uint64)
    clash = np.zeros(count, dtype=np.bool_)
    for d in range(depth):
        bits = np.take(table.bits, codes[d])
        clash |= (seen & bits) != 0
        seen |= bits
    if len(model.symbols) <= 64 or not clash.any():
        return clash
    rows = np.flatnonzero(clash)
    secs = [np.take(table.sec, codes[d, rows]) for d in range(depth)]
    exact = np.zeros(len(rows), dtype=np.bool_)
    for later in range(1, depth):
        for earlier in range(later):
            exact |= (secs[earlier] == secs[later]) & (secs[later] >= 0)
    clash[rows] = exact
    return clash


def _allocation_distance(
    target_set: TargetSet,
    rows: FloatArray,
    group_of: IntArray,
    codes: IntArray,
    total: FloatArray,
    x: FloatArray,
) -> FloatArray:
    """sum_g |W_g - t_g| at the end state, for every row.

    Untouched groups: the set's piecewise-linear function of x = 1 / T. Each step then
    replaces its group's term, |c x - t| -> |(c + m) x - t| = x |c + m - t T|, where c is
    the group's value before this step (earlier steps in the same group included).
    """
    depth, count = codes.shape
    move_of, start_of, aim_of = rows[0], rows[1], rows[2]
    change = np.zeros(count)
    groups: list[IntArray] = []
    moves: list[FloatArray] = []
    same = np.empty(count, dtype=np.bool_)
    scratch = np.empty(count)
    for d in range(depth):
        step = codes[d]
        move = np.take(move_of, step)
        before = np.take(start_of, step)
        if target_set.shared:
            group = np.take(group_of, step)
            for earlier_group, earlier_move in zip(groups, moves, strict=True):
                np.equal(earlier_group, group, out=same)
                np.multiply(earlier_move, same, out=scratch)
                before += scratch
            groups.append(group)
            moves.append(move)
        gap = np.take(aim_of, step)
        gap *= total
        np.subtract(before, gap, out=gap)  # c - t T
        np.add(gap, move, out=scratch)  # c + m - t T
        np.abs(scratch, out=scratch)
        np.abs(gap, out=gap)
        change += scratch
        change -= gap
    change *= x
    change += target_set.distance(x)
    return change


def _walk(
    model: PortfolioModel, table: ActionTable, ok: BoolArray, codes: IntArray, detail: bool
) -> tuple[BoolArray, FloatArray, list[FloatArray]]:
    """Execute every step of every row: feasibility, the linear sums after the last step, and
    (for `detail`) the cash before trading and after each step."""
    depth, count = codes.shape
    feasible = np.ones(count, dtype=np.bool_)
    sums = np.zeros((count, LINEAR_COLUMNS))
    sums[:, FLOW] = model.cash
    path = [sums[:, FLOW].copy()] if detail else []
    for d in range(depth):
        step = codes[d]
        feasible &= np.take(ok, step)
        sums += np.take(table.linear, step, axis=0)
        cash = sums[:, FLOW]
        feasible &= cash >= 0.0
        if detail:
            path.append(cash.copy())
    if depth > 1:
        feasible &= ~_repeats(table, codes, model)
    return feasible, sums, path


def _allocation_fit(
    model: PortfolioModel, table: ActionTable, codes: IntArray, total: FloatArray, x: FloatArray
) -> tuple[FloatArray, dict[str, FloatArray]]:
    """A per row (the mean fit over the target sets, 1.0 without any), and each set's fit."""
    set_fits: dict[str, FloatArray] = {}
    allocation = np.zeros(codes.shape[1])
    for k, target_set in enumerate(model.target_sets):
        distance = _allocation_distance(
            target_set, table.set_rows[k], table.set_group[k], codes, total, x
        )
        fit = 1.0 - 0.5 * distance
        set_fits[target_set.name] = fit
        allocation += fit
    if set_fits:
        allocation /= len(set_fits)
    else:
        allocation += 1.0
    return allocation, set_fits


def _score_codes(
    model: PortfolioModel,
    table: ActionTable,
    ok: BoolArray,
    codes: IntArray,
    settings: PortfolioSettings,
    detail: bool,
) -> ScoreDetail | tuple[FloatArray, BoolArray, FloatArray]:
    feasible, sums, path = _walk(model, table, ok, codes, detail)
    costs = np.ascontiguousarray(sums[:, COST])
    total = model.total - costs
    invested = model.invested + sums[:, DV]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # below the smallest normal float 1 / T would overflow: such a portfolio is empty
        x = np.where(total >= _TINY, 1.0 / total, 0.0)
        live = invested > INVESTED_EPSILON * np.maximum(total, 0.0)
        safe = np.where(live, invested, 1.0)
        diversification = np.where(live, 1.0 - (model.sum_sq + sums[:, DS2]) / (safe * safe), 0.0)
        quality = np.where(live, (model.sum_quality + sums[:, DSQ]) / safe, 0.0)
    allocation, set_fits = _allocation_fit(model, table, codes, total, x)

    weight_sum = settings.allocation_weight + settings.diversification_weight
    weight_sum += settings.quality_weight
    if model.total > 0:
        with np.errstate(over="ignore"):
            penalty = costs / model.total * settings.cost_penalty_factor
    else:
        penalty = np.zeros(codes.shape[1])
    scores = (
        settings.allocation_weight * allocation
        + settings.diversification_weight * diversification
        + settings.quality_weight * quality
    ) / weight_sum - penalty
    allowed = scores.copy() if detail else scores
    scores[~feasible] = -np.inf
    if not detail:
        return scores, feasible, costs
    return ScoreDetail(
        scores=scores,
        feasible=feasible,
        costs=costs,
        allocation_fit=allocation,
        diversification=diversification,
        quality=quality,
        cost_penalty=penalty,
        set_fits=set_fits,
        cash_after=np.ascontiguousarray(sums[:, FLOW]),
        total_value=total,
        invested=invested,
        cash_path=np.vstack(path),
        allowed_scores=allowed,
    )


def evaluate_sequences(
    model: PortfolioModel, sequences: Sequence[ActionSequence], settings: PortfolioSettings
) -> tuple[FloatArray, BoolArray, FloatArray]:
    """Scores, feasibility and costs of every sequence, in chunks of the configured size."""
    count = len(sequences)
    scores = np.empty(count)
    feasible = np.empty(count, dtype=np.bool_)
    costs = np.empty(count)
    chunk = settings.evaluation_chunk_size
    for start in range(0, count, chunk):
        part = sequences[start : start + chunk]
        table = model.table
        try:
            if table is None:
                raise KeyError
            codes = _encode(table, part)
        except KeyError:
            table = model.table_for(list(chain.from_iterable(part)))
            codes = _encode(table, part)
        ok = model.ok_for(table, settings)
        result = _score_codes(model, table, ok, codes, settings, detail=False)
        assert isinstance(result, tuple)
        end = start + len(part)
        scores[start:end], feasible[start:end], costs[start:end] = result
    return scores, feasible, costs


def score_detail(
    model: PortfolioModel, sequences: Sequence[ActionSequence], settings: PortfolioSettings
) -> ScoreDetail:
    """Scores with every component, for a small batch (simulation, plans, tests)."""
    table = model.table_for(list(chain.from_iterable(sequences)))
    codes = _encode(table, sequences)
    result = _score_codes(model, table, model.ok_for(table, settings), codes, settings, True)
    assert isinstance(result, ScoreDetail)
    return result
