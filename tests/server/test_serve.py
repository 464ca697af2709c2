"""`planforge serve` as a real process: real HTTP and a real WebSocket on a loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from planforge.configstore.store import ConfigStore
from tests.server.test_plans import PLUGINS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


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
    port = free_port()
    env = {
        **os.environ,
        "PLANFORGE_DATABASE_URL": database,
        "FACTORY_PLUGIN_DIRS": str(plugin_dir),
        "FACTORY_CACHE_DIR": str(tmp_path / "cache"),
        "FACTORY_STATE_DIR": str(tmp_path / "state"),
        "FACTORY_SANDBOX_TIMEOUT_S": "10",
    }
    env.pop("PLANFORGE_REDIS_URL", None)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "planforge.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30.0
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {(tmp_path / 'server.log').read_text()}")
            try:
                if http("GET", f"{base}/livez")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server never answered: {(tmp_path / 'server.log').read_text()}")
            time.sleep(0.05)
        yield Server(base, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


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
