"""Event fan-out through the in-process bus to 1,000 subscribers, in deliveries per second.

Two shapes, each measured on `InProcessEventBus` and, in the same run, on a naive bus that
keeps one global list of (user, callback) pairs and filters by user on every publish (the
obvious design; same stamping, buffering and locking otherwise):

- `spread`: 1,000 users with one subscriber each, events round-robin over the users;
- `broadcast`: one user with 1,000 subscribers (every event reaches all of them).

A third figure, `spread_4_threads`, publishes the `spread` load from 4 threads at once.
Events are built before timing; publishing (stamping, buffering, delivery) is timed. Each
figure is the median of `--repeats` runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

from planforge.runtime import AGENT_THINKING, InProcessEventBus, RuntimeEvent

TARGET_DELIVERED_PER_S = 50_000.0
SUBSCRIBERS = 1_000


class Counter:
    """A subscriber that does the least a real one does: look at the event, count it."""

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0

    def __call__(self, event: RuntimeEvent) -> None:
        self.count += 1
        self.last = event.user_sequence


class NaiveBus:
    """One global subscriber list, filtered by user on every publish."""

    def __init__(self, buffer_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[str, Callable[[RuntimeEvent], object]]] = []
        self._sequences: dict[str, int] = {}
        self._buffers: dict[str, deque[RuntimeEvent]] = {}
        self._buffer_size = buffer_size
        self.failures = 0

    def subscribe(self, user_id: str, callback: Callable[[RuntimeEvent], object]) -> None:
        with self._lock:
            self._subscribers.append((user_id, callback))

    def publish(self, event: RuntimeEvent) -> None:
        user_id = event.user_id
        with self._lock:
            sequence = self._sequences.get(user_id, 0) + 1
            self._sequences[user_id] = sequence
            stamped = event.with_user_sequence(sequence)
            buffer = self._buffers.get(user_id)
            if buffer is None:
                buffer = self._buffers[user_id] = deque(maxlen=self._buffer_size)
            buffer.append(stamped)
            subscribers = list(self._subscribers)
        for owner, callback in subscribers:
            if owner == user_id:
                try:
                    callback(stamped)
                except Exception:
                    self.failures += 1


def make_events(users: list[str], count: int) -> list[RuntimeEvent]:
    return [
        RuntimeEvent(
            user_id=users[i % len(users)],
            run_id=f"run-{i % len(users)}",
            sequence=i // len(users) + 1,
            type=AGENT_THINKING,
            ts=1_700_000_000.0,
            payload={"step_number": i},
        )
        for i in range(count)
    ]


def timed_publish(
    publish: Callable[[RuntimeEvent], None], events: list[RuntimeEvent], threads: int = 1
) -> float:
    gc.collect()
    if threads == 1:
        start = time.perf_counter()
        for event in events:
            publish(event)
        return time.perf_counter() - start
    chunks = [events[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(chunk: list[RuntimeEvent]) -> None:
        barrier.wait()
        for event in chunk:
            publish(event)

    workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def measure(
    kind: str, shape: str, events_count: int, repeats: int, threads: int = 1
) -> dict[str, float]:
    rates = []
    for _ in range(repeats):
        if shape == "spread":
            users = [f"user-{i:04d}" for i in range(SUBSCRIBERS)]
            per_user = 1
        else:
            users = ["alice"]
            per_user = SUBSCRIBERS
        bus: InProcessEventBus | NaiveBus = (
            InProcessEventBus(buffer_size=1000) if kind == "bus" else NaiveBus(buffer_size=1000)
        )
        counters = []
        for user in users:
            for _ in range(per_user):
                counter = Counter()
                counters.append(counter)
                bus.subscribe(user, counter)
        events = make_events(users, events_count)
        elapsed = timed_publish(bus.publish, events, threads)
        delivered = sum(c.count for c in counters)
        expected = events_count * (1 if shape == "spread" else SUBSCRIBERS)
        if delivered != expected:
            raise SystemExit(f"{kind}/{shape}: delivered {delivered}, expected {expected}")
        rates.append(delivered / elapsed)
    return {
        "delivered_per_s": round(statistics.median(rates)),
        "events": events_count,
        "subscribers": SUBSCRIBERS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000, help="events for `spread`")
    args = parser.parse_args()
    broadcast_events = max(1, args.events // 100)
    naive_spread_events = max(1_000, args.events // 20)  # the naive bus is slow: fewer events

    spread = measure("bus", "spread", args.events, args.repeats)
    spread_naive = measure("naive", "spread", naive_spread_events, args.repeats)
    broadcast = measure("bus", "broadcast", broadcast_events, args.repeats)
    broadcast_naive = measure("naive", "broadcast", broadcast_events, args.repeats)
    threaded = measure("bus", "spread", args.events, args.repeats, threads=4)
    threaded_naive = measure("naive", "spread", naive_spread_events, args.repeats, threads=4)

    figures = {
        "spread": spread["delivered_per_s"],
        "broadcast": broadcast["delivered_per_s"],
        "spread_4_threads": threaded["delivered_per_s"],
    }
    met = {name: rate >= TARGET_DELIVERED_PER_S for name, rate in figures.items()}
    print(
        json.dumps(
            {
                "benchmark": "events",
                "unit": "events delivered per second",
                "bus": {"spread": spread, "broadcast": broadcast, "spread_4_threads": threaded},
                "naive": {
                    "spread": spread_naive,
                    "broadcast": broadcast_naive,
                    "spread_4_threads": threaded_naive,
                },
                "comparison": "naive = one global subscriber list filtered by user per publish",
                "ratio_bus_over_naive": {
                    "spread": round(spread["delivered_per_s"] / spread_naive["delivered_per_s"], 1),
                    "broadcast": round(
                        broadcast["delivered_per_s"] / broadcast_naive["delivered_per_s"], 2
                    ),
                    "spread_4_threads": round(
                        threaded["delivered_per_s"] / threaded_naive["delivered_per_s"], 1
                    ),
                },
                "target": {"delivered_per_s": TARGET_DELIVERED_PER_S},
                "met": met,
                "target_met": all(met.values()),
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
