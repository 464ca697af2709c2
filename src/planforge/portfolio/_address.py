"""The table row of each step, found from its object's address with array lookups.

In CPython an object's id is its address. The addresses of one table's actions, shifted by
their common alignment, are mapped to slots of a small array by their low bits; the smallest
power-of-two size where no two share a slot is chosen once per table, so a batch is encoded
with a mask, two lookups and a check. When no size up to the ceiling separates them, a binary
search over the sorted addresses does the same job, a few times slower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from planforge.portfolio._arrays import IntArray

__all__ = ["AddressIndex"]

#: The slot array is tried from 4 slots per address up, doubling, to this many slots at most.
_SLOTS_CEILING: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class AddressIndex:
    """Addresses to rows; `rows_of` raises `KeyError` for an address it does not hold."""

    sorted_ids: IntArray
    sorted_rows: IntArray
    shift: int = 0
    mask: int = 0
    #: The address held at each slot (0 where none) and its row; `None` when no slot array
    #: up to the ceiling holds every address in a slot of its own.
    slot_ids: IntArray | None = None
    slot_rows: IntArray | None = None

    @classmethod
    def build(cls, index: Mapping[int, int]) -> AddressIndex:
        ids = np.fromiter(index, dtype=np.intp, count=len(index))
        rows = np.fromiter(index.values(), dtype=np.intp, count=len(index))
        order = np.argsort(ids)
        ids, rows = ids[order], rows[order]
        if not len(ids):
            return cls(ids, rows)
        common = int(np.bitwise_or.reduce(ids - ids[0]))  # its lowest set bit: the alignment
        shift = (common & -common).bit_length() - 1 if common else 0
        shifted = ids >> shift
        size = 1 << (4 * len(ids) - 1).bit_length()
        while size <= _SLOTS_CEILING:
            slots = shifted & (size - 1)
            if len(np.unique(slots)) == len(ids):
                slot_ids = np.zeros(size, dtype=np.intp)
                slot_rows = np.zeros(size, dtype=np.intp)
                slot_ids[slots] = ids
                slot_rows[slots] = rows
                return cls(ids, rows, shift, size - 1, slot_ids, slot_rows)
            size *= 2
        return cls(ids, rows)

    def rows_of(self, ids: IntArray) -> IntArray:
        if self.slot_ids is None or self.slot_rows is None:
            return self._search(ids)
        slots = ids >> self.shift
        slots &= self.mask
        if not np.array_equal(self.slot_ids.take(slots), ids):
            raise KeyError("an action of the batch is not in the table")
        found: IntArray = self.slot_rows.take(slots)
        return found

    def _search(self, ids: IntArray) -> IntArray:
        known = self.sorted_ids
        if not len(known):
            if len(ids):
                raise KeyError("an action of the batch is not in the table")
            return np.zeros(0, dtype=np.intp)
        position = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        if not np.array_equal(known[position], ids):
            raise KeyError("an action of the batch is not in the table")
        found: IntArray = self.sorted_rows[position]
        return found
