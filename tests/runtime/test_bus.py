"""Both buses, with real threads; the Redis bus against a real Redis (and a real second
process). Redis tests skip with a reason when PLANFORGE_TEST_REDIS_URL is unset."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from planforge.runtime import (
    AGENT_THINKING,
    EventBus,
    InProcessEventBus,
    RedisEventBus,
    RuntimeEvent,
    event_bus_from_settings,
    load_runtime_settings,
)
from planforge.runtime.errors import EventBusError, InvalidContextError

REDIS_ENV = "PLANFORGE_TEST_REDIS_URL"
SRC = Path(__file__).resolve().parents[2] / "src"


def event(user_id: str, sequence: int = 1, run_id: str = "run-1") -> RuntimeEvent:
    return RuntimeEvent(
        user_id=user_id,
        run_id=run_id,
        sequence=sequence,
        type=AGENT_THINKING,
        ts=1_700_000_000.0 + sequence,
        payload={"step_number": sequence},
    )


class Collector:
    """A subscriber that records what it gets (list.append is atomic under the GIL)."""

    def __init__(self) -> None:
        self.events: list[RuntimeEvent] = []

    def __call__(self, received: RuntimeEvent) -> None:
        self.events.append(received)

    @property
    def user_sequences(self) -> list[int]:
        return [e.user_sequence for e in self.events]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def run_threads(count: int, target: Callable[[int], None]) -> None:
    start = threading.Barrier(count)

    def body(index: int) -> None:
        start.wait()
        target(index)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- in-process bus -------------------------------------------------------------------------


def test_in_process_bus_satisfies_the_protocol() -> None:
    assert isinstance(InProcessEventBus(), EventBus)


def test_200_users_publishing_concurrently_each_get_only_their_own_events_in_order() -> None:
    bus = InProcessEventBus(buffer_size=100)
    users = [f"user-{i:03d}" for i in range(200)]
    collectors = {user: (Collector(), Collector()) for user in users}
    for user, (first, second) in collectors.items():
        bus.subscribe(user, first)
        bus.subscribe(user, second)

    def publish(index: int) -> None:
        user = users[index]
        for sequence in range(1, 31):
            bus.publish(event(user, sequence, run_id=f"run-{sequence % 2}"))

    run_threads(200, publish)
    for user, pair in collectors.items():
        for collector in pair:
            assert {e.user_id for e in collector.events} == {user}
            assert collector.user_sequences == list(range(1, 31))
            assert [e.sequence for e in collector.events] == list(range(1, 31))
    metrics = bus.metrics()
    assert metrics["published"] == 200 * 30
    assert metrics["delivered"] == 200 * 30 * 2
    assert metrics["delivery_failures"] == 0


def test_one_user_published_from_many_threads_is_delivered_in_user_sequence_order() -> None:
    bus = InProcessEventBus(buffer_size=10)
    collectors = [Collector() for _ in range(3)]
    for collector in collectors:
        bus.subscribe("alice", collector)
    per_thread = 400

    def publish(index: int) -> None:
        for sequence in range(1, per_thread + 1):
            bus.publish(event("alice", sequence, run_id=f"run-{index}"))
            if sequence % 50 == 0:
                time.sleep(0)  # invite a thread switch mid-stream

    run_threads(8, publish)
    for collector in collectors:
        assert collector.user_sequences == list(range(1, 8 * per_thread + 1))
        for index in range(8):
            run = [e.sequence for e in collector.events if e.run_id == f"run-{index}"]
            assert run == list(range(1, per_thread + 1))


def test_replay_since_n_returns_exactly_the_missed_events() -> None:
    bus = InProcessEventBus()
    for sequence in range(1, 11):
        bus.publish(event("alice", sequence))
    bus.publish(event("bob"))
    missed = bus.replay("alice", 4)
    assert [e.user_sequence for e in missed] == [5, 6, 7, 8, 9, 10]
    assert [e.sequence for e in missed] == [5, 6, 7, 8, 9, 10]
    assert bus.replay("alice", 10) == []
    assert [e.user_sequence for e in bus.replay("alice")] == list(range(1, 11))
    assert bus.replay("nobody", 0) == []
    assert bus.last_sequence("alice") == 10


def test_subscribe_since_n_replays_then_goes_live_without_gap_or_duplicate() -> None:
    bus = InProcessEventBus()
    for sequence in range(1, 6):
        bus.publish(event("alice", sequence))
    live = Collector()
    bus.subscribe("alice", live)
    late = Collector()
    bus.subscribe("alice", late, since=2)
    for sequence in range(6, 9):
        bus.publish(event("alice", sequence))
    assert late.user_sequences == [3, 4, 5, 6, 7, 8]
    assert live.user_sequences == [6, 7, 8]


def test_subscribing_while_another_thread_publishes_misses_nothing() -> None:
    bus = InProcessEventBus(buffer_size=10_000)
    total = 5_000
    started = threading.Event()

    def publish() -> None:
        for sequence in range(1, total + 1):
            bus.publish(event("alice", sequence))
            if sequence == 100:
                started.set()

    publisher = threading.Thread(target=publish)
    publisher.start()
    started.wait()
    late = Collector()
    bus.subscribe("alice", late, since=0)
    publisher.join()
    assert late.user_sequences == list(range(1, total + 1))


def test_the_per_user_buffer_is_bounded() -> None:
    bus = InProcessEventBus(buffer_size=5)
    for sequence in range(1, 21):
        bus.publish(event("alice", sequence))
    assert [e.user_sequence for e in bus.replay("alice", 0)] == [16, 17, 18, 19, 20]
    # older than the buffer: what is left, from the oldest kept
    assert [e.user_sequence for e in bus.replay("alice", 3)] == [16, 17, 18, 19, 20]
    late = Collector()
    bus.subscribe("alice", late, since=17)
    assert late.user_sequences == [18, 19, 20]


def test_a_since_beyond_the_last_sequence_replays_nothing() -> None:
    # the client is told the current sequence instead (see the WebSocket route)
    bus = InProcessEventBus()
    for sequence in range(1, 4):
        bus.publish(event("alice", sequence))
    assert bus.replay("alice", 500) == []
    assert bus.replay("alice", 3) == []
    late = Collector()
    bus.subscribe("alice", late, since=500)
    bus.publish(event("alice", 4))
    assert late.user_sequences == [4]
    assert bus.last_sequence("alice") == 4


def test_a_raising_subscriber_is_counted_and_never_breaks_publish() -> None:
    bus = InProcessEventBus()
    good_before, good_after = Collector(), Collector()

    def broken(_: RuntimeEvent) -> None:
        raise RuntimeError("socket closed")

    bus.subscribe("alice", good_before)
    bus.subscribe("alice", broken)
    bus.subscribe("alice", good_after)
    for sequence in range(1, 6):
        bus.publish(event("alice", sequence))
    assert good_before.user_sequences == [1, 2, 3, 4, 5]
    assert good_after.user_sequences == [1, 2, 3, 4, 5]
    assert bus.delivery_failures == 5
    assert bus.delivered == 10
    assert bus.published == 5


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    bus = InProcessEventBus()
    collector = Collector()
    unsubscribe = bus.subscribe("alice", collector)
    bus.publish(event("alice", 1))
    unsubscribe()
    unsubscribe()
    bus.publish(event("alice", 2))
    assert collector.user_sequences == [1]
    assert bus.subscriber_count("alice") == 0


def test_publishing_from_inside_a_subscriber_keeps_order_and_does_not_deadlock() -> None:
    bus = InProcessEventBus()
    seen = Collector()

    def echo(received: RuntimeEvent) -> None:
        seen(received)
        if received.sequence < 5:
            bus.publish(event("alice", received.sequence + 1))

    bus.subscribe("alice", echo)
    bus.publish(event("alice", 1))
    assert seen.user_sequences == [1, 2, 3, 4, 5]


def test_per_user_state_is_bounded_least_recently_used_first() -> None:
    bus = InProcessEventBus(buffer_size=10, max_users=3)
    watched = Collector()
    bus.subscribe("watched", watched)
    for index in range(10):
        bus.publish(event(f"user-{index}"))
    metrics = bus.metrics()
    assert metrics["users"] <= 3
    assert metrics["evicted_users"] >= 8
    assert bus.replay("user-0", 0) == []
    assert [e.user_sequence for e in bus.replay("user-9", 0)] == [bus.last_sequence("user-9")]
    # a user with a live subscriber is never evicted
    bus.publish(event("watched", 1))
    assert len(watched.events) == 1


def test_an_evicted_user_never_reuses_a_sequence_number() -> None:
    bus = InProcessEventBus(max_users=1)
    for sequence in range(1, 6):
        bus.publish(event("alice", sequence))
    bus.publish(event("bob"))  # evicts alice
    assert bus.replay("alice", 0) == []
    bus.publish(event("alice", 6))
    assert bus.last_sequence("alice") > 5


def test_a_slow_subscriber_applies_backpressure_without_losing_events() -> None:
    bus = InProcessEventBus(buffer_size=10, max_pending=4)
    seen = Collector()

    def slow(received: RuntimeEvent) -> None:
        if received.user_sequence % 25 == 0:
            time.sleep(0.001)
        seen(received)

    bus.subscribe("alice", slow)

    def publish(index: int) -> None:
        for sequence in range(1, 201):
            bus.publish(event("alice", sequence, f"run-{index}"))

    run_threads(6, publish)
    assert seen.user_sequences == list(range(1, 1201))


def test_subscriber_count_per_user_is_bounded() -> None:
    bus = InProcessEventBus(max_subscribers_per_user=2)
    bus.subscribe("alice", Collector())
    bus.subscribe("alice", Collector())
    with pytest.raises(EventBusError, match="limit"):
        bus.subscribe("alice", Collector())
    bus.subscribe("bob", Collector())


def test_bad_arguments_are_rejected_with_clear_errors() -> None:
    bus = InProcessEventBus()
    with pytest.raises(InvalidContextError) as caught:
        bus.subscribe("two words", Collector())
    assert caught.value.field == "user_id"
    with pytest.raises(EventBusError, match="since"):
        bus.subscribe("alice", Collector(), since=-1)
    with pytest.raises(EventBusError, match="since"):
        bus.replay("alice", since=True)
    with pytest.raises(EventBusError, match="buffer_size"):
        InProcessEventBus(buffer_size=0)
    with pytest.raises(EventBusError, match="max_users"):
        InProcessEventBus(max_users=0)


def test_a_closed_bus_refuses_work() -> None:
    bus = InProcessEventBus()
    collector = Collector()
    bus.subscribe("alice", collector)
    bus.close()
    with pytest.raises(EventBusError, match="closed"):
        bus.publish(event("alice"))
    with pytest.raises(EventBusError, match="closed"):
        bus.subscribe("alice", Collector())
    assert collector.events == []


def test_settings_choose_the_bus() -> None:
    bus = event_bus_from_settings(load_runtime_settings(event_buffer=7, max_users=9))
    assert isinstance(bus, InProcessEventBus)
    assert (bus.buffer_size, bus.max_users) == (7, 9)


# -- Redis bus ------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        pytest.skip(f"{REDIS_ENV} is unset; set it to a Redis URL to run the Redis bus tests")
    return url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    import redis

    name = f"pftest-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def make_bus(redis_url: str, prefix: str) -> Iterator[Callable[..., RedisEventBus]]:
    buses: list[RedisEventBus] = []

    def make(**options: object) -> RedisEventBus:
        bus = RedisEventBus(redis_url, prefix=prefix, poll_interval_s=0.02, **options)  # type: ignore[arg-type]
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def test_an_event_published_on_one_bus_reaches_a_subscriber_on_another(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    listener, publisher = make_bus(), make_bus()
    alice, bob = Collector(), Collector()
    listener.subscribe("alice", alice)
    listener.subscribe("bob", bob)
    for sequence in range(1, 21):
        publisher.publish(event("alice", sequence))
        if sequence % 4 == 0:
            publisher.publish(event("bob", sequence // 4))
    assert wait_until(lambda: len(alice.events) == 20 and len(bob.events) == 5)
    time.sleep(0.1)  # nothing more may arrive
    assert alice.user_sequences == list(range(1, 21))
    assert [e.sequence for e in alice.events] == list(range(1, 21))
    assert {e.user_id for e in alice.events} == {"alice"}
    assert bob.user_sequences == [1, 2, 3, 4, 5]
    assert {e.user_id for e in bob.events} == {"bob"}
    assert publisher.published == 25
    assert listener.delivered == 25


def test_an_event_published_in_another_process_reaches_a_subscriber_here(
    make_bus: Callable[..., RedisEventBus], redis_url: str, prefix: str
) -> None:
    bus = make_bus()
    alice, bob = Collector(), Collector()
    bus.subscribe("alice", alice)
    bus.subscribe("bob", bob)
    script = textwrap.dedent(
        f"""
        from planforge.runtime._bus import RedisEventBus
        from planforge.runtime._context import UserExecutionContext
        from planforge.runtime._emitter import UserEventEmitter

        bus = RedisEventBus({redis_url!r}, prefix={prefix!r})
        for user in ("alice", "bob"):
            emitter = UserEventEmitter(UserExecutionContext.create(user), bus)
            emitter.agent_started("holistic", {{"objective": "rebalance"}})
            for step in range(1, 11):
                emitter.agent_thinking("holistic", "evaluating", step, step * 10)
            emitter.agent_completed("holistic", {{"steps": 3}}, 12.5)
            assert emitter.failed == 0, emitter.failed
        bus.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(alice.events) == 12 and len(bob.events) == 12)
    for collector, user in ((alice, "alice"), (bob, "bob")):
        assert {e.user_id for e in collector.events} == {user}
        assert collector.user_sequences == list(range(1, 13))
        assert [e.sequence for e in collector.events] == list(range(1, 13))
        assert collector.events[0].type == "agent_started"
        assert collector.events[-1].type == "agent_completed"


def test_resubscribing_with_since_n_gets_exactly_what_was_missed(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    listener, publisher = make_bus(), make_bus()
    first = Collector()
    unsubscribe = listener.subscribe("alice", first)
    for sequence in range(1, 6):
        publisher.publish(event("alice", sequence))
    assert wait_until(lambda: len(first.events) == 5)
    unsubscribe()
    for sequence in range(6, 11):
        publisher.publish(event("alice", sequence))
    assert [e.user_sequence for e in publisher.replay("alice", 5)] == [6, 7, 8, 9, 10]
    again = Collector()
    listener.subscribe("alice", again, since=first.events[-1].user_sequence)
    publisher.publish(event("alice", 11))
    assert wait_until(lambda: len(again.events) == 6)
    time.sleep(0.1)
    assert again.user_sequences == [6, 7, 8, 9, 10, 11]
    assert first.user_sequences == [1, 2, 3, 4, 5]


def test_a_since_ahead_of_a_redis_stream_replays_nothing_and_goes_live(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    listener, publisher = make_bus(), make_bus()
    for sequence in range(1, 4):
        publisher.publish(event("alice", sequence))
    assert publisher.replay("alice", 500) == []
    ahead = Collector()
    listener.subscribe("alice", ahead, since=500)
    publisher.publish(event("alice", 4))
    assert wait_until(lambda: len(ahead.events) == 1)
    time.sleep(0.1)
    assert ahead.user_sequences == [4]
    assert listener.last_sequence("alice") == 4


def test_a_second_local_subscriber_with_since_gets_its_replay_then_live(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    bus = make_bus()
    live = Collector()
    bus.subscribe("alice", live)
    for sequence in range(1, 4):
        bus.publish(event("alice", sequence))
    assert wait_until(lambda: len(live.events) == 3)
    late = Collector()
    bus.subscribe("alice", late, since=1)
    bus.publish(event("alice", 4))
    assert wait_until(lambda: len(late.events) == 3 and len(live.events) == 4)
    assert late.user_sequences == [2, 3, 4]
    assert live.user_sequences == [1, 2, 3, 4]


def test_the_listener_recovers_from_a_killed_connection_without_gaps(
    make_bus: Callable[..., RedisEventBus], redis_url: str
) -> None:
    import redis

    listener, publisher = make_bus(), make_bus()
    seen = Collector()
    listener.subscribe("alice", seen)
    publisher.publish(event("alice", 1))
    assert wait_until(lambda: len(seen.events) == 1)
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ours = [
            client["id"]
            for client in admin.client_list()
            if client.get("name") == listener.client_name and int(client.get("sub", 0)) > 0
        ]
        assert ours, "the listener's subscription connection was not found"
        for client_id in ours:
            admin.client_kill_filter(_id=client_id)
    finally:
        admin.close()
    for sequence in range(2, 31):
        publisher.publish(event("alice", sequence))
    assert wait_until(lambda: len(seen.events) >= 30)
    time.sleep(0.1)
    assert seen.user_sequences == list(range(1, 31))


def test_the_redis_stream_is_bounded(
    make_bus: Callable[..., RedisEventBus], redis_url: str
) -> None:
    import redis

    bus = make_bus(buffer_size=10)
    for sequence in range(1, 31):
        bus.publish(event("alice", sequence))
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(bus.stream_key("alice")) == 10
        assert client.pttl(bus.stream_key("alice")) > 0
    finally:
        client.close()
    assert [e.user_sequence for e in bus.replay("alice", 0)] == list(range(21, 31))
    assert [e.user_sequence for e in bus.replay("alice", 25)] == [26, 27, 28, 29, 30]
    assert bus.last_sequence("alice") == 30


def test_a_raising_subscriber_is_counted_on_the_redis_bus(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    bus = make_bus()
    good = Collector()

    def broken(_: RuntimeEvent) -> None:
        raise ValueError("boom")

    bus.subscribe("alice", broken)
    bus.subscribe("alice", good)
    for sequence in range(1, 4):
        bus.publish(event("alice", sequence))
    assert wait_until(lambda: len(good.events) == 3)
    assert bus.delivery_failures == 3
    assert good.user_sequences == [1, 2, 3]


def test_an_unreachable_redis_is_a_clear_error() -> None:
    bus = RedisEventBus(
        "redis://127.0.0.1:1/0", prefix="pftest", socket_timeout_s=0.5, subscribe_timeout_s=0.5
    )
    try:
        with pytest.raises(EventBusError, match="could not publish"):
            bus.publish(event("alice"))
        with pytest.raises(EventBusError, match="could not subscribe"):
            bus.subscribe("alice", Collector())
        assert bus.metrics()["publish_errors"] == 1
    finally:
        bus.close()
    with pytest.raises(EventBusError, match="closed"):
        bus.publish(event("alice"))


def test_settings_with_a_redis_url_choose_the_redis_bus(redis_url: str) -> None:
    bus = event_bus_from_settings(load_runtime_settings(redis_url=redis_url, event_buffer=5))
    try:
        assert isinstance(bus, RedisEventBus)
        assert bus.buffer_size == 5
        assert isinstance(bus, EventBus)
    finally:
        bus.close()
