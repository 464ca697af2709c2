"""`planforge serve` as a real process: real HTTP and a real WebSocket on a loopback port."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from planforge.configstore.store import ConfigStore
from tests.server._served import http, serving
from tests.server.test_plans import PLUGINS


class Server:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("serve")
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "srv_echo.py").write_text(textwrap.dedent(PLUGINS["srv_echo"]))
    database = f"sqlite:///{tmp_path / 'store.db'}"
    with ConfigStore(database) as store:
        _, token = store.create_user("alice", "operator")
    env = {
        **os.environ,
        "PLANFORGE_DATABASE_URL": database,
        "FACTORY_PLUGIN_DIRS": str(plugin_dir),
        "FACTORY_CACHE_DIR": str(tmp_path / "cache"),
        "FACTORY_STATE_DIR": str(tmp_path / "state"),
        "FACTORY_SANDBOX_TIMEOUT_S": "10",
    }
    env.pop("PLANFORGE_REDIS_URL", None)
    with serving(env, tmp_path / "server.log") as base:
        yield Server(base, token)


def test_a_served_run_is_reachable_over_http_and_streamed_over_a_websocket(
    server: Server,
) -> None:
    status, body = http("GET", f"{server.base}/plans")
    assert status == 401
    assert body["error"] == "AuthenticationError"
    ws_base = server.base.replace("http://", "ws://")
    with connect(
        f"{ws_base}/ws/events", additional_headers={"Authorization": f"Bearer {server.token}"}
    ) as events:
        status, body = http(
            "POST",
            f"{server.base}/plans",
            server.token,
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
    status, record = http("GET", f"{server.base}/plans/{run_id}", server.token)
    assert status == 200
    assert record["status"] == "completed"
    assert len(record["plan"]["steps"]) == 2


def test_a_served_websocket_with_a_wrong_token_is_closed_with_4401(server: Server) -> None:
    ws_base = server.base.replace("http://", "ws://")
    with (
        connect(f"{ws_base}/ws/events?token=pf_wrong") as events,
        pytest.raises(ConnectionClosed) as closed,
    ):
        events.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
