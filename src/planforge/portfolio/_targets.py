"""Allocation targets, precomputed so a batch's allocation term costs one binary search.

For one target set, the distance sum_g |W_g - t_g| with every group at its value before
trading is a convex piecewise-linear function of x = 1 / T; its breakpoints, slopes and
intercepts are computed once per context, and the scoring kernel corrects only the groups
a sequence touches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planforge.portfolio._arrays import FloatArray, IntArray

__all__ = ["TargetSet", "build_target_set"]


@dataclass(frozen=True, slots=True)
class TargetSet:
    """One non-empty target set, with what its allocation term needs precomputed."""

    name: str
    groups: tuple[str, ...]
    targets: FloatArray
    #: Held value per group before trading.
    current: FloatArray
    #: Per security: its group's index, or -1 when its group has no target.
    group_of: IntArray
    #: Can two different securities of one sequence fall in the same group?
    shared: bool
    # sum_g |current_g * x - t_g| = slopes[k] * x + intercepts[k], k = #breakpoints <= x
    breakpoints: FloatArray
    slopes: FloatArray
    intercepts: FloatArray

    def distance(self, x: FloatArray) -> FloatArray:
        """sum_g |W_g - t_g| with every group at its current value and x = 1 / T."""
        k = np.searchsorted(self.breakpoints, x, side="right")
        result: FloatArray = self.slopes[k] * x + self.intercepts[k]
        return result

    def revalued(self, values: FloatArray) -> TargetSet:
        """The same groups and targets with the securities at `values` (one per security)."""
        current = _group_values(self.group_of, values, len(self.groups))
        return _with_current(self.name, self.groups, self.targets, current, self.group_of)


def build_target_set(
    name: str, targets: Mapping[str, float], labels: Sequence[str], values: FloatArray
) -> TargetSet:
    groups = tuple(sorted(targets))
    position = {group: index for index, group in enumerate(groups)}
    group_of = np.array([position.get(label, -1) for label in labels], dtype=np.intp)
    wanted = np.array([targets[group] for group in groups], dtype=np.float64)
    current = _group_values(group_of, values, len(groups))
    return _with_current(name, groups, wanted, current, group_of)


def _group_values(group_of: IntArray, values: FloatArray, count: int) -> FloatArray:
    """Each group's value; bincount adds in security order, as a loop would: the same sums
    to the last bit."""
    hit = group_of >= 0
    current: FloatArray = np.bincount(group_of[hit], weights=values[hit], minlength=count).astype(
        np.float64
    )
    return current


def _with_current(
    name: str, groups: tuple[str, ...], wanted: FloatArray, current: FloatArray, group_of: IntArray
) -> TargetSet:
    live = current > 0
    constant = float(wanted[~live].sum())
    order = np.argsort(wanted[live] / current[live], kind="stable")
    breakpoints = (wanted[live] / current[live])[order]
    held, aims = current[live][order], wanted[live][order]
    above_v = np.concatenate(([0.0], np.cumsum(held)))
    above_t = np.concatenate(([0.0], np.cumsum(aims)))
    slopes = above_v - (above_v[-1] - above_v)
    intercepts = -above_t + (above_t[-1] - above_t) + constant
    return TargetSet(
        name=name,
        groups=groups,
        targets=wanted,
        current=current,
        group_of=group_of,
        shared=name != "by_security",
        breakpoints=breakpoints,
        slopes=slopes,
        intercepts=intercepts,
    )
