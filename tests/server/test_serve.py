"""`planforge serve` as a real process: real HTTP and a real WebSocket on a loopback port."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server._served import Served, http, served_planforge
from tests.server.test_plans import PLUGINS

ALICE = "alice"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("serve"),
        users={ALICE: "operator"},
        plugins={"srv_echo": PLUGINS["srv_echo"]},
    ) as served:
        yield served


def test_a_served_run_is_reachable_over_http_and_streamed_over_a_websocket(
    server: Served,
) -> None:
    status, body = http("GET", f"{server.base}/plans")
    assert status == 401
    assert body["error"] == "AuthenticationError"
    ws_base = server.base.replace("http://", "ws://")
    with connect(
        f"{ws_base}/ws/events",
        additional_headers={"Authorization": f"Bearer {server.tokens['alice']}"},
    ) as events:
        status, body = http(
            "POST",
            f"{server.base}/plans",
            server.tokens[ALICE],
            {"objective": "echo", "planner": "echo", "context": {"n": 2}},
        )
        assert status == 202
        run_id = body["run_id"]
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] not in {"agent_completed", "agent_error"}:
            received.append(json.loads(events.recv(timeout=20)))
    assert [event["type"] for event in received] == [
        "agent_started",
        "agent_thinking",
        "agent_completed",
    ]
    assert {event["run_id"] for event in received} == {run_id}
    status, record = http("GET", f"{server.base}/plans/{run_id}", server.tokens[ALICE])
    assert status == 200
    assert record["status"] == "completed"
    assert len(record["plan"]["steps"]) == 2


def test_a_served_websocket_with_a_wrong_token_is_closed_with_4401(server: Served) -> None:
    ws_base = server.base.replace("http://", "ws://")
    with (
        connect(f"{ws_base}/ws/events?token=pf_wrong") as events,
        pytest.raises(ConnectionClosed) as closed,
    ):
        events.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


def test_no_token_given_in_a_query_string_reaches_the_server_log(server: Served) -> None:
    ws_base = server.base.replace("http://", "ws://")
    status, _ = http("GET", f"{server.base}/plans?token={server.tokens['alice']}&since=1")
    assert status == 401  # a query token is no way to call HTTP routes
    with connect(f"{ws_base}/ws/events?token={server.tokens['alice']}") as events:
        events.send("hello")
    deadline = time.monotonic() + 10.0
    text = server.log_path.read_text()
    while text.count("token=[REDACTED]") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        text = server.log_path.read_text()
    assert server.tokens[ALICE] not in text
    assert server.tokens[ALICE][3:20] not in text
    access = [json.loads(line) for line in text.splitlines() if "token=" in line]
    assert {line["component"] for line in access} >= {"uvicorn.access", "uvicorn.error"}
    assert all("token=[REDACTED]" in line["msg"] for line in access)


def run_echo(server: Served, n: int) -> str:
    status, body = http(
        "POST",
        f"{server.base}/plans",
        server.tokens[ALICE],
        {"objective": "echo", "planner": "echo", "context": {"n": n}},
    )
    assert status == 202, body
    run_id: str = body["run_id"]
    deadline = time.monotonic() + 30
    while (
        http("GET", f"{server.base}/plans/{run_id}", server.tokens[ALICE])[1]["status"] == "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return run_id


def test_a_since_ahead_of_the_stream_replays_nothing_and_says_the_current_sequence(
    server: Served,
) -> None:
    run_echo(server, 1)  # at least one event exists for alice
    ws_base = server.base.replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {server.tokens['alice']}"}
    with connect(f"{ws_base}/ws/events?since=0", additional_headers=headers) as events:
        current = 0
        while True:  # the whole buffer, to learn the current sequence
            try:
                current = json.loads(events.recv(timeout=1))["user_sequence"]
            except TimeoutError:
                break
    assert current >= 3
    with connect(
        f"{ws_base}/ws/events?since={current + 1000}", additional_headers=headers
    ) as events:
        notice = json.loads(events.recv(timeout=10))
        assert notice["type"] == "stream_position"
        assert notice["user_sequence"] == current
        assert str(current) in notice["message"]
        run_id = run_echo(server, 1)
        live = json.loads(events.recv(timeout=10))
    assert live["type"] == "agent_started"
    assert live["run_id"] == run_id
    assert live["user_sequence"] == current + 1


def test_a_user_the_runtime_cannot_serve_is_refused_with_a_policy_close(server: Served) -> None:
    """A user stored before names were checked ('op sp' is no valid id) is refused for good
    (1008), not told to try again later (1013)."""
    import hashlib
    import secrets
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, text

    token = "pf_" + secrets.token_urlsafe(32)
    engine = create_engine(server.database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_users (name, role, token_hash, created_at) "
                "VALUES (:name, 'operator', :hash, :at)"
            ),
            {
                "name": "op sp",
                "hash": hashlib.sha256(token.encode()).hexdigest(),
                "at": datetime.now(UTC),
            },
        )
    engine.dispose()
    ws_base = server.base.replace("http://", "ws://")
    with (
        connect(
            f"{ws_base}/ws/events", additional_headers={"Authorization": f"Bearer {token}"}
        ) as events,
        pytest.raises(ConnectionClosed) as closed,
    ):
        events.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
