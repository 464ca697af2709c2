from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from planforge.errors import PlanExecutionError
from planforge.runtime import (
    EVENT_TYPES,
    InProcessEventBus,
    RedisEventBus,
    RuntimeEvent,
    UserExecutionContext,
)
from planforge.runtime._emitter import MAX_PAYLOAD_ITEMS, UserEventEmitter, jsonable

REDIS_ENV = "PLANFORGE_TEST_REDIS_URL"


@dataclasses.dataclass
class Summary:
    plan_id: str
    steps: tuple[str, ...]


def subscribed(bus: InProcessEventBus, user_id: str) -> list[RuntimeEvent]:
    received: list[RuntimeEvent] = []
    bus.subscribe(user_id, received.append)
    return received


def emit_all(emitter: UserEventEmitter) -> list[RuntimeEvent | None]:
    return [
        emitter.agent_started("holistic", {"objective": "rebalance", "bucket": "beta"}),
        emitter.agent_thinking("holistic", "scoring sequences", 2, 40.0),
        emitter.tool_executing("profit_taking", {"threshold": 0.2}),
        emitter.tool_completed("profit_taking", {"candidates": 3}, 12.3456),
        emitter.agent_completed("holistic", Summary("p-1", ("sell A", "buy B")), 250.0),
        emitter.agent_error("holistic", PlanExecutionError("holistic", "no data"), 251.0),
    ]


def test_the_six_events_carry_their_payloads_and_per_run_sequence() -> None:
    bus = InProcessEventBus()
    received = subscribed(bus, "alice")
    context = UserExecutionContext.create("alice", request_id="req-1")
    emitter = UserEventEmitter(context, bus)
    returned = emit_all(emitter)
    assert [e.type for e in received] == list(EVENT_TYPES)
    assert [e.sequence for e in received] == [1, 2, 3, 4, 5, 6]
    assert [e.user_sequence for e in received] == [1, 2, 3, 4, 5, 6]
    assert {(e.user_id, e.run_id) for e in received} == {("alice", context.run_id)}
    assert [e.sequence for e in returned if e is not None] == [1, 2, 3, 4, 5, 6]
    started, thinking, executing, completed, done, error = (e.payload for e in received)
    assert started["agent_name"] == "holistic"
    assert started["context"] == {"objective": "rebalance", "bucket": "beta"}
    assert started["request_id"] == "req-1"
    assert started["depth"] == 0
    assert thinking == {
        "agent_name": "holistic",
        "reasoning": "scoring sequences",
        "step_number": 2,
        "progress_percentage": 40.0,
    }
    assert executing == {"tool_name": "profit_taking", "parameters": {"threshold": 0.2}}
    assert completed["result"] == {"candidates": 3}
    assert completed["execution_time_ms"] == 12.346
    assert done["result"] == {"plan_id": "p-1", "steps": ["sell A", "buy B"]}
    assert error["error_type"] == "PlanExecutionError"
    assert "no data" in error["error"]
    assert error["execution_time_ms"] == 251.0
    assert error["input_error"] is False  # a planner's failure, not the caller's input
    for e in received:
        assert RuntimeEvent.from_json(e.to_json()) == e
    assert (emitter.sent, emitter.failed, emitter.sequence) == (6, 0, 6)


def test_each_run_numbers_its_own_events() -> None:
    bus = InProcessEventBus()
    received = subscribed(bus, "alice")
    root = UserExecutionContext.create("alice")
    first, second = UserEventEmitter(root, bus), UserEventEmitter(root.child(), bus)
    first.agent_started("a")
    second.agent_started("b")
    first.agent_completed("a")
    second.agent_completed("b")
    assert [(e.run_id == root.run_id, e.sequence) for e in received] == [
        (True, 1),
        (False, 1),
        (True, 2),
        (False, 2),
    ]
    assert received[1].payload["parent_run_id"] == root.run_id
    assert received[1].payload["depth"] == 1
    assert [e.user_sequence for e in received] == [1, 2, 3, 4]


def test_a_failing_bus_never_raises_out_of_the_emitter() -> None:
    bus = InProcessEventBus()
    bus.close()
    emitter = UserEventEmitter(UserExecutionContext.create("alice"), bus)
    assert emit_all(emitter) == [None] * 6
    assert (emitter.sent, emitter.failed) == (0, 6)
    assert emitter.metrics() == {"sent": 0, "failed": 6, "sequence": 6}


def test_an_unreachable_redis_is_counted_not_raised() -> None:
    bus = RedisEventBus("redis://127.0.0.1:1/0", prefix="pftest", socket_timeout_s=0.5)
    try:
        emitter = UserEventEmitter(UserExecutionContext.create("alice"), bus)
        assert emitter.agent_started("holistic") is None
        assert emitter.agent_error("holistic", "boom") is None
        assert (emitter.sent, emitter.failed) == (0, 2)
    finally:
        bus.close()


def test_a_raising_subscriber_does_not_count_as_an_emitter_failure() -> None:
    bus = InProcessEventBus()

    def broken(_: RuntimeEvent) -> None:
        raise ConnectionResetError("websocket gone")

    bus.subscribe("alice", broken)
    emitter = UserEventEmitter(UserExecutionContext.create("alice"), bus)
    emit_all(emitter)
    assert (emitter.sent, emitter.failed) == (6, 0)
    assert bus.delivery_failures == 6


def test_concurrent_emission_numbers_events_consecutively_and_in_order() -> None:
    bus = InProcessEventBus(buffer_size=10)
    received = subscribed(bus, "alice")
    emitter = UserEventEmitter(UserExecutionContext.create("alice"), bus)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for step in range(200):
            emitter.agent_thinking("holistic", "step", step, 50)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e.sequence for e in received] == list(range(1, 1601))
    assert [e.user_sequence for e in received] == list(range(1, 1601))
    assert emitter.sent == 1600


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (150, 100.0),
        (-3, 0.0),
        (33.333333, 33.33),
        (None, None),
        ("soon", None),
        (float("nan"), None),
    ],
)
def test_progress_is_clamped_to_a_percentage(given: object, expected: float | None) -> None:
    bus = InProcessEventBus()
    received = subscribed(bus, "alice")
    emitter = UserEventEmitter(UserExecutionContext.create("alice"), bus)
    emitter.agent_thinking("holistic", "why", 1, given)  # type: ignore[arg-type]
    assert received[0].payload["progress_percentage"] == expected


def test_payloads_are_json_safe_and_bounded() -> None:
    value = {
        1: {"b", "a"},
        "big": list(range(MAX_PAYLOAD_ITEMS + 5)),
        "text": "x" * 10_000,
        "inf": float("inf"),
        "thing": object(),
        "summary": Summary("p", ("s",)),
    }
    safe = jsonable(value)
    json.dumps(safe)  # must not raise
    assert safe["1"] == ["a", "b"]
    assert len(safe["big"]) == MAX_PAYLOAD_ITEMS + 1
    assert safe["big"][-1] == "...(+5 more items)"
    assert safe["text"].endswith("...(+1808 chars)")
    assert safe["inf"] == "inf"
    assert safe["summary"] == {"plan_id": "p", "steps": ["s"]}
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):
        node["next"] = {}
        node = node["next"]  # type: ignore[assignment]
    json.dumps(jsonable(deep))


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        pytest.skip(f"{REDIS_ENV} is unset; set it to a Redis URL to run the Redis tests")
    return url


@pytest.fixture
def redis_buses(redis_url: str) -> Iterator[tuple[RedisEventBus, RedisEventBus]]:
    import redis

    prefix = f"pftest-{uuid.uuid4().hex[:12]}"
    listener = RedisEventBus(redis_url, prefix=prefix, poll_interval_s=0.02)
    publisher = RedisEventBus(redis_url, prefix=prefix)
    yield listener, publisher
    listener.close()
    publisher.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_the_six_events_travel_through_redis(
    redis_buses: tuple[RedisEventBus, RedisEventBus],
) -> None:
    listener, publisher = redis_buses
    received: list[RuntimeEvent] = []
    listener.subscribe("alice", received.append)
    emitter = UserEventEmitter(UserExecutionContext.create("alice"), publisher)
    local = [e for e in emit_all(emitter) if e is not None]
    deadline = time.monotonic() + 10
    while len(received) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.type for e in received] == list(EVENT_TYPES)
    assert [e.sequence for e in received] == [1, 2, 3, 4, 5, 6]
    assert [e.user_sequence for e in received] == [1, 2, 3, 4, 5, 6]
    assert [e.payload for e in received] == [e.payload for e in local]
