from __future__ import annotations

import logging
import threading

import pytest

from planforge.errors import PlannerError
from planforge.holistic._events import (
    EVALUATION_STARTED,
    EVENT_TYPES,
    MODULE_FAILED,
    PLANNING_COMPLETED,
    EngineEvent,
    EventHub,
)


def test_subscribers_receive_numbered_read_only_events_until_they_unsubscribe() -> None:
    hub = EventHub(clock=lambda: 1234.5)
    seen: list[EngineEvent] = []
    unsubscribe = hub.subscribe(seen.append)
    payload = {"sequences": 10}
    first = hub.emit(EVALUATION_STARTED, payload, run_id="run-1")
    payload["sequences"] = 99  # the emitted event keeps what was sent
    unsubscribe()
    unsubscribe()  # harmless twice
    hub.emit(PLANNING_COMPLETED, run_id="run-1")
    assert seen == [first]
    assert first.to_dict() == {
        "type": EVALUATION_STARTED,
        "run_id": "run-1",
        "sequence": 1,
        "ts": 1234.5,
        "payload": {"sequences": 10},
    }
    with pytest.raises(TypeError):
        first.payload["sequences"] = 5  # type: ignore[index]
    assert hub.subscriber_count == 0


def test_a_raising_subscriber_is_counted_logged_and_never_stops_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = EventHub()
    got: list[str] = []

    def broken(event: EngineEvent) -> None:
        raise RuntimeError("subscriber bug")

    hub.subscribe(broken)
    hub.subscribe(lambda event: got.append(event.type))
    with caplog.at_level(logging.WARNING, logger="planforge.holistic._events"):
        hub.emit(MODULE_FAILED, {"module": "filters.diversity"})
        hub.emit(PLANNING_COMPLETED)
    assert got == [MODULE_FAILED, PLANNING_COMPLETED]
    assert hub.subscriber_errors == 2
    assert "subscriber bug" in caplog.text
    assert "event subscriber failed" in caplog.text


def test_unsubscribing_one_of_two_identical_callbacks_keeps_the_other() -> None:
    hub = EventHub()
    got: list[int] = []
    callback = lambda event: got.append(event.sequence)  # noqa: E731
    first = hub.subscribe(callback)
    hub.subscribe(callback)
    first()
    hub.emit(PLANNING_COMPLETED)
    assert got == [1]


def test_recent_history_is_a_bounded_ring() -> None:
    hub = EventHub(history=3)
    for index in range(5):
        hub.emit(EVALUATION_STARTED, {"i": index})
    assert [e.payload["i"] for e in hub.recent()] == [2, 3, 4]
    assert [e.sequence for e in hub.recent(2)] == [4, 5]
    assert hub.recent(0) == []
    assert hub.last_sequence == 5


def test_sequence_numbers_are_unique_and_gapless_across_threads() -> None:
    hub = EventHub(history=1000)
    received: list[int] = []
    lock = threading.Lock()

    def collect(event: EngineEvent) -> None:
        with lock:
            received.append(event.sequence)

    hub.subscribe(collect)

    def emit_many() -> None:
        for _ in range(100):
            hub.emit(EVALUATION_STARTED)

    threads = [threading.Thread(target=emit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(received) == list(range(1, 401))
    assert [e.sequence for e in hub.recent()] == list(range(1, 401))


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(PlannerError, match="history"):
        EventHub(history=-1)
    hub = EventHub()
    with pytest.raises(PlannerError, match="non-empty"):
        hub.emit("")
    with pytest.raises(PlannerError, match="callable"):
        hub.subscribe("not callable")  # type: ignore[arg-type]


def test_every_stage_has_a_distinct_event_type() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == 12
