"""The address index: every known object finds its row; an unknown one is refused."""

from __future__ import annotations

import numpy as np
import pytest

from planforge.portfolio import _address
from planforge.portfolio._address import AddressIndex


def _ids(objects: list[object]) -> np.ndarray:
    held = np.fromiter(objects, dtype=object, count=len(objects))
    return np.frombuffer(held, dtype=np.intp)


def _objects(count: int) -> list[object]:
    # interleave other allocations so the addresses are not one neat run
    objects: list[object] = []
    filler: list[object] = []
    for n in range(count):
        objects.append(("action", n, float(n)))
        filler.append([n] * (n % 7))
    return objects


@pytest.fixture(params=["slots", "search"])
def index_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_address, "_SLOTS_FROM_BATCH", 1)  # every batch may build the slots
    if request.param == "search":
        monkeypatch.setattr(_address, "_SLOTS_CEILING", 0)
    return str(request.param)


def test_every_step_finds_its_row_in_batch_order(index_kind: str) -> None:
    objects = _objects(300)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    batch = [objects[i] for i in np.random.default_rng(7).integers(0, len(objects), 5_000)]
    expected = [objects.index(o) for o in batch]
    assert index.rows_of(_ids(batch)).tolist() == expected
    assert isinstance(index.slots, tuple) == (index_kind == "slots")
    assert index.rows_of(_ids(batch[:3])).tolist() == expected[:3]  # again, slots kept


def test_an_object_outside_the_table_is_refused(index_kind: str) -> None:
    objects = _objects(50)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    stranger = ("action", -1, -1.0)
    with pytest.raises(KeyError, match="not in the table"):
        index.rows_of(_ids([objects[0], stranger, objects[1]]))


def test_an_empty_index_encodes_an_empty_batch_and_refuses_any_step() -> None:
    index = AddressIndex.build({})
    assert index.rows_of(np.zeros(0, dtype=np.intp)).tolist() == []
    with pytest.raises(KeyError):
        index.rows_of(_ids([object()]))


def test_small_batches_and_comparisons_keep_the_binary_search() -> None:
    objects = _objects(200)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    assert index.rows_of(_ids(objects[:10])).tolist() == list(range(10))
    assert index.slots is None  # a small plan's batch does not pay for the slot array
    fixed = AddressIndex(index.sorted_ids, index.sorted_rows, compact=False)
    assert fixed.rows_of(_ids(objects * 30)).tolist() == list(range(200)) * 30
    assert fixed.slots is None


def test_the_slot_array_gives_each_address_a_slot_of_its_own() -> None:
    objects = _objects(200)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    index.rows_of(_ids(objects * 30))
    if not isinstance(index.slots, tuple):
        pytest.skip("these addresses did not fit a slot array; the search path is tested above")
    _, mask, slot_ids, _ = index.slots
    assert sorted(slot_ids[slot_ids != 0].tolist()) == sorted(id(o) for o in objects)
    assert len(slot_ids) == mask + 1
    assert mask & (mask + 1) == 0  # a power of two
