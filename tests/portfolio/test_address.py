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
    if request.param == "search":
        monkeypatch.setattr(_address, "_SLOTS_CEILING", 0)
    return str(request.param)


def test_every_step_finds_its_row_in_batch_order(index_kind: str) -> None:
    objects = _objects(300)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    assert (index.slot_ids is None) == (index_kind == "search")
    batch = [objects[i] for i in np.random.default_rng(7).integers(0, len(objects), 5_000)]
    expected = [objects.index(o) for o in batch]
    assert index.rows_of(_ids(batch)).tolist() == expected


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


def test_the_slot_array_gives_each_address_a_slot_of_its_own() -> None:
    objects = _objects(200)
    index = AddressIndex.build({id(o): row for row, o in enumerate(objects)})
    if index.slot_ids is None:
        pytest.skip("these addresses did not fit a slot array; the search path is tested above")
    held = index.slot_ids[index.slot_ids != 0]
    assert sorted(held.tolist()) == sorted(id(o) for o in objects)
    assert len(index.slot_ids) & (len(index.slot_ids) - 1) == 0  # a power of two
