"""The address index: every known address finds its row; an unknown one is refused."""

from __future__ import annotations

import numpy as np
import pytest

from planforge.portfolio import _address
from planforge.portfolio._address import AddressIndex

#: Addresses as an allocator hands them out: 16-byte aligned, in a few clusters far apart.
_CLUSTERED = [0x7F00_0000_1000 + 16 * k for k in range(0, 600, 3)] + [
    0x7F00_0400_0000 + 48 * k for k in range(100)
]
#: Addresses whose low bits, after their alignment, clash in every slot array up to the
#: ceiling: two of them differ only above bit 20.
_CLASHING = [16 * k for k in (1, 2, 3, 1 + (1 << 20))]


def _index(addresses: list[int]) -> AddressIndex:
    return AddressIndex.build({address: row for row, address in enumerate(addresses)})


def _batch(addresses: list[int], size: int) -> tuple[np.ndarray, list[int]]:
    picks = np.random.default_rng(7).integers(0, len(addresses), size)
    return np.array([addresses[i] for i in picks], dtype=np.intp), picks.tolist()


@pytest.fixture(autouse=True)
def _every_batch_may_build_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_address, "_SLOTS_FROM_BATCH", 1)


@pytest.mark.parametrize(("addresses", "kind"), [(_CLUSTERED, "slots"), (_CLASHING, "search")])
def test_every_step_finds_its_row_in_batch_order(addresses: list[int], kind: str) -> None:
    index = _index(addresses)
    batch, rows = _batch(addresses, 5_000)
    assert index.rows_of(batch).tolist() == rows
    assert isinstance(index.slots, tuple) == (kind == "slots")
    assert index.rows_of(batch[:3]).tolist() == rows[:3]  # again, with what was built


@pytest.mark.parametrize("addresses", [_CLUSTERED, _CLASHING])
@pytest.mark.parametrize("stranger", [8, 0x7F00_0000_1010, 0x7F00_0000_1008, 1 << 60])
def test_an_address_outside_the_table_is_refused(addresses: list[int], stranger: int) -> None:
    index = _index(addresses)
    batch = np.array([addresses[0], stranger, addresses[1]], dtype=np.intp)
    with pytest.raises(KeyError, match="not in the table"):
        index.rows_of(batch)


def test_the_slot_array_gives_each_address_a_slot_of_its_own() -> None:
    index = _index(_CLUSTERED)
    index.rows_of(np.array(_CLUSTERED[:1], dtype=np.intp))
    assert isinstance(index.slots, tuple)
    _, mask, slot_ids, slot_rows = index.slots
    assert sorted(slot_ids[slot_ids != 0].tolist()) == sorted(_CLUSTERED)
    assert mask & (mask + 1) == 0  # a power of two, less one
    assert len(slot_ids) == mask + 1
    assert slot_rows[slot_ids == _CLUSTERED[5]].tolist() == [5]


def test_small_batches_and_comparisons_keep_the_binary_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_address, "_SLOTS_FROM_BATCH", 100)
    index = _index(_CLUSTERED)
    assert index.rows_of(np.array(_CLUSTERED[:10], dtype=np.intp)).tolist() == list(range(10))
    assert index.slots is None  # a small plan's batch does not pay for the slot array
    fixed = AddressIndex(index.sorted_ids, index.sorted_rows, compact=False)
    batch, rows = _batch(_CLUSTERED, 1_000)
    assert fixed.rows_of(batch).tolist() == rows
    assert fixed.slots is None


def test_an_empty_index_encodes_an_empty_batch_and_refuses_any_step() -> None:
    index = AddressIndex.build({})
    assert index.rows_of(np.zeros(0, dtype=np.intp)).tolist() == []
    with pytest.raises(KeyError):
        index.rows_of(np.array([16], dtype=np.intp))


def test_real_objects_find_their_rows() -> None:
    objects = [("action", n, float(n)) for n in range(300)]
    held = np.fromiter(objects * 20, dtype=object, count=6_000)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    assert index.rows_of(np.frombuffer(held, dtype=np.intp)).tolist() == list(range(300)) * 20
