"""`GET /ws/events` through the ASGI app: own events only, live, replay on reconnect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from planforge.runtime import RuntimeEvent
from tests.server.test_plans import Service, make_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    yield from make_service(tmp_path)


def read_run(socket: WebSocketTestSession, run_id: str) -> list[dict[str, Any]]:
    """Events up to and including the run's agent_completed or agent_error."""
    events: list[dict[str, Any]] = []
    while True:
        event: dict[str, Any] = socket.receive_json()
        events.append(event)
        if event["run_id"] == run_id and event["type"] in {"agent_completed", "agent_error"}:
            return events


def until_closed(socket: WebSocketTestSession) -> tuple[list[dict[str, Any]], WebSocketDisconnect]:
    """Everything the server sends until it closes the socket, and the close."""
    received: list[dict[str, Any]] = []
    while True:
        try:
            received.append(socket.receive_json())
        except WebSocketDisconnect as closed:
            return received, closed


def test_the_socket_streams_the_callers_run_and_nothing_of_another_users(
    service: Service,
) -> None:
    with service.client.websocket_connect("/ws/events", headers=service.auth("alice")) as socket:
        bob_run = service.start("bob", objective="echo bob", planner="echo")
        assert service.wait("bob", bob_run)["status"] == "completed"
        alice_run = service.start("alice", objective="echo alice", planner="echo")
        events = read_run(socket, alice_run)
    assert [event["type"] for event in events] == [
        "agent_started",
        "agent_thinking",
        "agent_completed",
    ]
    assert {event["user_id"] for event in events} == {"alice"}
    assert {event["run_id"] for event in events} == {alice_run}
    assert [event["sequence"] for event in events] == [1, 2, 3]
    assert [event["user_sequence"] for event in events] == [1, 2, 3]
    assert events[-1]["payload"]["result"]["planner"] == "echo"
    # the events are exactly what the bus made of them
    assert RuntimeEvent.from_dict(events[0]).user_id == "alice"


def test_a_failed_run_ends_its_stream_with_agent_error(service: Service) -> None:
    with service.client.websocket_connect("/ws/events", headers=service.auth("alice")) as socket:
        run_id = service.start("alice", objective="explode", planner="failing")
        events = read_run(socket, run_id)
    assert events[-1]["type"] == "agent_error"
    assert events[0]["type"] == "agent_started"


def test_the_token_may_come_as_a_query_parameter(service: Service) -> None:
    url = f"/ws/events?token={service.tokens['alice']}"
    with service.client.websocket_connect(url) as socket:
        run_id = service.start("alice", objective="echo", planner="echo")
        assert read_run(socket, run_id)[-1]["type"] == "agent_completed"


def test_reconnecting_with_since_receives_exactly_the_missed_events(service: Service) -> None:
    with service.client.websocket_connect("/ws/events", headers=service.auth("alice")) as socket:
        first = service.start("alice", objective="echo one", planner="echo")
        seen = read_run(socket, first)
    last = seen[-1]["user_sequence"]
    missed = service.start("alice", objective="echo two", planner="echo")
    assert service.wait("alice", missed)["status"] == "completed"
    with service.client.websocket_connect(
        f"/ws/events?since={last}", headers=service.auth("alice")
    ) as socket:
        replayed = read_run(socket, missed)
        assert {event["run_id"] for event in replayed} == {missed}
        assert [event["user_sequence"] for event in replayed] == [last + 1, last + 2, last + 3]
        # then live events follow with no gap and nothing repeated in between
        live = service.start("alice", objective="echo three", planner="echo")
        following = read_run(socket, live)
    assert following[0]["type"] == "agent_started"
    assert following[0]["user_sequence"] == last + 4
    assert {event["run_id"] for event in following} == {live}


def test_since_zero_replays_the_whole_buffer_and_a_new_socket_only_live_ones(
    service: Service,
) -> None:
    done = service.start("alice", objective="echo", planner="echo")
    service.wait("alice", done)
    with service.client.websocket_connect(
        "/ws/events?since=0", headers=service.auth("alice")
    ) as socket:
        assert [event["user_sequence"] for event in read_run(socket, done)] == [1, 2, 3]
    with service.client.websocket_connect("/ws/events", headers=service.auth("alice")) as socket:
        live = service.start("alice", objective="echo", planner="echo")
        events = read_run(socket, live)
    assert events[0]["run_id"] == live  # nothing of the finished run is replayed unasked


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/ws/events", {}),
        ("/ws/events?token=pf_wrong", {}),
        ("/ws/events", {"Authorization": "Bearer pf_wrong"}),
        ("/ws/events", {"Authorization": "Basic abc"}),
    ],
)
def test_a_missing_or_wrong_token_closes_with_4401(
    service: Service, url: str, headers: dict[str, str]
) -> None:
    with service.client.websocket_connect(url, headers=headers) as socket:
        received, closed = until_closed(socket)
    assert received == []
    assert closed.code == 4401
    assert "token" in closed.reason


@pytest.mark.parametrize("since", ["-1", "abc", "1.5"])
def test_a_malformed_since_closes_with_4400(service: Service, since: str) -> None:
    with service.client.websocket_connect(
        f"/ws/events?since={since}", headers=service.auth("alice")
    ) as socket:
        received, closed = until_closed(socket)
    assert received == []
    assert closed.code == 4400
    assert "since" in closed.reason


def test_a_client_too_far_behind_is_closed_instead_of_buffered(service: Service) -> None:
    service.client.app.state.service.extra["ws_max_pending"] = 5  # type: ignore[attr-defined]
    for number in range(1, 21):
        service.bus.publish(
            RuntimeEvent(
                user_id="alice",
                run_id="run-1",
                sequence=number,
                type="agent_thinking",
                ts=time.time(),
            )
        )
    with service.client.websocket_connect(
        "/ws/events?since=0", headers=service.auth("alice")
    ) as socket:
        received, closed = until_closed(socket)
    assert closed.code == 1013
    assert "since" in closed.reason
    # what was sent before the close is in order, and at most the bound
    assert [event["user_sequence"] for event in received] == list(range(1, len(received) + 1))
    assert len(received) <= 5
    # the subscription is gone with the socket
    assert service.bus.subscriber_count("alice") == 0


def test_a_closed_socket_leaves_no_subscription_behind(service: Service) -> None:
    with service.client.websocket_connect("/ws/events", headers=service.auth("alice")) as socket:
        run_id = service.start("alice", objective="echo", planner="echo")
        read_run(socket, run_id)
        assert service.bus.subscriber_count("alice") == 1
    deadline = time.monotonic() + 10.0
    while service.bus.subscriber_count("alice") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.bus.subscriber_count("alice") == 0
