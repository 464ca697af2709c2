"""The table row of each step, found from its object's address with array lookups.

In CPython an object's id is its address. The addresses of one table's actions, shifted by
their common alignment, are mapped to slots of a small array by their low bits; the smallest
power-of-two size where no two share a slot is chosen once per table (on its first large
batch), so a batch is encoded with a shift, a mask, two lookups and a check. When no size up
to the ceiling separates them, a binary search over the sorted addresses does the same job, a
few times slower.
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
#: It is built on the first batch of at least this many steps: below that, and for the many
#: short-lived tables of small plans, the binary search costs less than building it.
_SLOTS_FROM_BATCH: Final = 4_096

#: (shift, mask, the address held at each slot or 0, the row of that address)
_Slots = tuple[int, int, IntArray, IntArray]


@dataclass(slots=True)
class AddressIndex:
    """Addresses to rows; `rows_of` raises `KeyError` for an address it does not hold.

    `compact=False` keeps the binary search for every batch (for comparisons).
    """

    sorted_ids: IntArray
    sorted_rows: IntArray
    compact: bool = True
    #: None until a large batch asks; `False` when no slot array up to the ceiling gives
    #: every address a slot of its own. Replaced in one assignment, so threads may race.
    slots: _Slots | bool | None = None

    @classmethod
    def build(cls, index: Mapping[int, int]) -> AddressIndex:
        ids = np.fromiter(index, dtype=np.intp, count=len(index))
        rows = np.fromiter(index.values(), dtype=np.intp, count=len(index))
        order = np.argsort(ids)
        return cls(ids[order], rows[order])

    def rows_of(self, ids: IntArray) -> IntArray:
        slots = self.slots
        if slots is None and self.compact and len(ids) >= _SLOTS_FROM_BATCH:
            slots = self.slots = _slots_of(self.sorted_ids, self.sorted_rows) or False
        if not isinstance(slots, tuple):
            return self._search(ids)
        shift, mask, slot_ids, slot_rows = slots
        where = ids >> shift
        where &= mask
        if not np.array_equal(slot_ids.take(where), ids):
            raise KeyError("an action of the batch is not in the table")
        found: IntArray = slot_rows.take(where)
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


def _slots_of(ids: IntArray, rows: IntArray) -> _Slots | None:
    """The smallest slot array where the addresses' low bits give each a slot of its own."""
    if not len(ids):
        return None
    common = int(np.bitwise_or.reduce(ids - ids[0]))  # its lowest set bit: the alignment
    shift = (common & -common).bit_length() - 1 if common else 0
    shifted = ids >> shift
    size = 1 << (4 * len(ids) - 1).bit_length()
    while size <= _SLOTS_CEILING:
        where = shifted & (size - 1)
        if len(np.unique(where)) == len(ids):
            slot_ids = np.zeros(size, dtype=np.intp)
            slot_rows = np.zeros(size, dtype=np.intp)
            slot_ids[where] = ids
            slot_rows[where] = rows
            return shift, size - 1, slot_ids, slot_rows
        size *= 2
    return None
