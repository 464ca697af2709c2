from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

import pytest

from planforge.errors import PlannerError
from planforge.runtime._context import (
    MAX_CONTEXT_DEPTH,
    InvalidContextError,
    UserExecutionContext,
    new_run_id,
    run_id_time,
)

ID_FIELDS = ("user_id", "thread_id", "run_id", "request_id")
BAD_IDS = [
    ("", "must not be empty"),
    ("x" * 129, "129 characters"),
    ("has space", "may only contain"),
    ("semi;colon", "may only contain"),
    ("slash/path", "may only contain"),
    ("new\nline", "may only contain"),
    ("ünïcode", "may only contain"),
    (42, "must be a string"),
    (None, "must be a string"),
]


def build(**fields: object) -> UserExecutionContext:
    values: dict[str, object] = {
        "user_id": "alice",
        "thread_id": "thread-1",
        "run_id": "run-1",
        "request_id": "req-1",
    }
    values.update(fields)
    return UserExecutionContext(**values)  # type: ignore[arg-type]


def test_create_fills_in_the_ids() -> None:
    context = UserExecutionContext.create("alice", metadata={"source": "api"})
    assert context.user_id == "alice"
    assert len(context.run_id) == 32
    assert context.thread_id == context.run_id
    assert context.request_id != context.run_id
    assert context.parent is None
    assert context.depth == 0
    assert context.metadata == {"source": "api"}
    assert abs(context.created_at - time.time()) < 60


def test_create_keeps_given_thread_and_request_ids() -> None:
    context = UserExecutionContext.create("bob", thread_id="t:1", request_id="r@2")
    assert (context.thread_id, context.request_id) == ("t:1", "r@2")


@pytest.mark.parametrize("field_name", ID_FIELDS)
@pytest.mark.parametrize(("value", "problem"), BAD_IDS)
def test_every_malformed_id_is_rejected_naming_the_field(
    field_name: str, value: object, problem: str
) -> None:
    with pytest.raises(InvalidContextError) as caught:
        build(**{field_name: value})
    assert caught.value.field == field_name
    assert field_name in str(caught.value)
    assert problem in str(caught.value)
    assert isinstance(caught.value, PlannerError)


@pytest.mark.parametrize("field_name", ["user_id", "thread_id", "request_id"])
def test_create_validates_what_it_is_given(field_name: str) -> None:
    user_id = "bad id" if field_name == "user_id" else "alice"
    thread_id = "bad id" if field_name == "thread_id" else None
    request_id = "bad id" if field_name == "request_id" else None
    with pytest.raises(InvalidContextError) as caught:
        UserExecutionContext.create(user_id, thread_id=thread_id, request_id=request_id)
    assert caught.value.field == field_name


def test_the_longest_allowed_id_and_every_allowed_character_pass() -> None:
    context = build(user_id="a" * 128, thread_id="AZaz09_.:@-")
    assert len(context.user_id) == 128


def test_metadata_is_a_read_only_copy() -> None:
    source = {"plan": "rebalance"}
    context = UserExecutionContext.create("alice", metadata=source)
    source["plan"] = "changed"
    assert context.metadata["plan"] == "rebalance"
    with pytest.raises(TypeError):
        context.metadata["plan"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("metadata", [{1: "a"}, ["not", "a", "mapping"], "text"])
def test_malformed_metadata_is_rejected(metadata: object) -> None:
    with pytest.raises(InvalidContextError) as caught:
        build(metadata=metadata)
    assert caught.value.field == "metadata"


def test_a_context_is_frozen() -> None:
    context = UserExecutionContext.create("alice")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.user_id = "mallory"  # type: ignore[misc]


def test_child_nests_under_its_parent() -> None:
    root = UserExecutionContext.create("alice", metadata={"a": 1})
    child = root.child()
    grandchild = child.child(request_id="req-9", metadata={"b": 2})
    assert child.parent is root
    assert grandchild.parent is child
    assert (root.depth, child.depth, grandchild.depth) == (0, 1, 2)
    assert len({root.run_id, child.run_id, grandchild.run_id}) == 3
    assert child.user_id == grandchild.user_id == "alice"
    assert child.thread_id == root.thread_id
    assert child.request_id == root.request_id
    assert child.metadata == {"a": 1}
    assert grandchild.request_id == "req-9"
    assert grandchild.metadata == {"b": 2}
    assert grandchild.root is root
    assert grandchild.to_dict()["parent_run_id"] == child.run_id


@pytest.mark.parametrize("override", ["user_id", "run_id", "depth", "parent"])
def test_child_refuses_to_change_identity(override: str) -> None:
    root = UserExecutionContext.create("alice")
    with pytest.raises(InvalidContextError) as caught:
        root.child(**{override: "mallory"})
    assert caught.value.field == override


def test_child_validates_overridden_ids() -> None:
    with pytest.raises(InvalidContextError) as caught:
        UserExecutionContext.create("alice").child(thread_id="")
    assert caught.value.field == "thread_id"


def test_inconsistent_depth_or_parent_is_rejected() -> None:
    root = UserExecutionContext.create("alice")
    with pytest.raises(InvalidContextError) as caught:
        build(depth=1)
    assert caught.value.field == "depth"
    with pytest.raises(InvalidContextError) as caught:
        build(parent=root, depth=0)
    assert caught.value.field == "depth"
    with pytest.raises(InvalidContextError) as caught:
        build(user_id="bob", parent=root, depth=1)
    assert caught.value.field == "parent"
    with pytest.raises(InvalidContextError) as caught:
        build(parent="root", depth=1)
    assert caught.value.field == "parent"


def test_nesting_depth_is_bounded() -> None:
    context = UserExecutionContext.create("alice")
    for _ in range(MAX_CONTEXT_DEPTH):
        context = context.child()
    assert context.depth == MAX_CONTEXT_DEPTH
    with pytest.raises(InvalidContextError) as caught:
        context.child()
    assert caught.value.field == "depth"
    assert str(MAX_CONTEXT_DEPTH) in str(caught.value)


def test_to_dict_is_plain_data() -> None:
    context = UserExecutionContext.create("alice", metadata={"k": "v"})
    data = context.to_dict()
    assert data == {
        "user_id": "alice",
        "thread_id": context.thread_id,
        "run_id": context.run_id,
        "request_id": context.request_id,
        "created_at": context.created_at,
        "metadata": {"k": "v"},
        "parent_run_id": None,
        "depth": 0,
    }
    assert type(data["metadata"]) is dict


def test_contexts_work_as_set_members() -> None:
    first = UserExecutionContext.create("alice")
    assert first in {first, first.child()}
    assert first == dataclasses.replace(first)


def test_100k_run_ids_are_unique_fixed_width_and_sorted_in_creation_order() -> None:
    ids = [new_run_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert {len(run_id) for run_id in ids} == {32}
    assert all(c in "0123456789abcdef" for c in ids[0] + ids[-1])
    assert ids == sorted(ids)


def test_ids_made_in_the_same_millisecond_never_collide() -> None:
    ids = [new_run_id() for _ in range(20_000)]
    per_millisecond = Counter(run_id[:12] for run_id in ids)
    # the test is only meaningful if many ids shared a millisecond
    assert max(per_millisecond.values()) > 1
    assert len(set(ids)) == len(ids)
    same_ms = [run_id for run_id in ids if run_id[:12] == per_millisecond.most_common(1)[0][0]]
    counters = [int(run_id[12:16], 16) for run_id in same_ms]
    assert counters == sorted(counters)
    assert len(set(counters)) == len(counters)


def test_ids_from_many_threads_never_collide() -> None:
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def make(slot: int) -> None:
        start.wait()
        results[slot].extend(new_run_id() for _ in range(10_000))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [run_id for chunk in results for run_id in chunk]
    assert len(set(everything)) == 80_000
    for chunk in results:
        assert chunk == sorted(chunk)


def test_run_id_time_reads_the_creation_time_back() -> None:
    before = time.time()
    run_id = new_run_id()
    assert abs(run_id_time(run_id) - before) < 5
    with pytest.raises(InvalidContextError):
        run_id_time("run-1")
    with pytest.raises(InvalidContextError):
        run_id_time("z" * 32)
