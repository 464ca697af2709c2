"""Two `planforge serve` processes on one PostgreSQL database and one Redis: a run started
through one is streamed to a WebSocket client connected to the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import create_engine, text
from websockets.sync.client import connect

from planforge.configstore.db import normalise_url
from planforge.configstore.store import ConfigStore
from tests.server._served import free_port, http, stop, wait_until_live
from tests.server.test_plans import PLUGINS

POSTGRES_ENV = "PLANFORGE_TEST_POSTGRES_URL"
REDIS_ENV = "PLANFORGE_TEST_REDIS_URL"
#: A Redis database of these tests' own, flushed before and after (the bus has no env prefix).
REDIS_DB = 13


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(f"{name} is unset; set it to run the multi-process server test")
    return value


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    base = normalise_url(required(POSTGRES_ENV))
    schema = f"pftest_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis database, empty before and after."""
    import redis

    base = required(REDIS_ENV).rstrip("/")
    head, _, tail = base.rpartition("/")
    url = f"{head}/{REDIS_DB}" if tail.isdigit() else f"{base}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()


class Process:
    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log


def start_server(env: dict[str, str], tmp_path: Path, name: str) -> tuple[Process, IO[str]]:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "planforge.cli", "serve", "--port", str(port)],
        env={
            **env,
            "FACTORY_CACHE_DIR": str(tmp_path / f"{name}-cache"),
            "FACTORY_STATE_DIR": str(tmp_path / f"{name}-state"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Process(process, f"http://127.0.0.1:{port}", log_path), log


def test_a_run_started_on_one_process_streams_to_a_client_of_the_other(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "srv_echo.py").write_text(textwrap.dedent(PLUGINS["srv_echo"]))
    with ConfigStore(database_url) as store:
        _, token = store.create_user("alice", "operator")
    env = {
        **os.environ,
        "PLANFORGE_DATABASE_URL": database_url,
        "PLANFORGE_REDIS_URL": redis_url,
        "FACTORY_PLUGIN_DIRS": str(plugin_dir),
        "FACTORY_SANDBOX_TIMEOUT_S": "10",
    }
    servers: list[Process] = []
    logs: list[IO[str]] = []
    try:
        for name in ("a", "b"):
            server, log = start_server(env, tmp_path, name)
            servers.append(server)
            logs.append(log)
        for server in servers:
            wait_until_live(server.process, server.base, server.log)
        a, b = servers
        ws_b = b.base.replace("http://", "ws://")
        with connect(
            f"{ws_b}/ws/events", additional_headers={"Authorization": f"Bearer {token}"}
        ) as events:
            status, body = http(
                "POST",
                f"{a.base}/plans",
                token,
                {"objective": "echo", "planner": "echo", "context": {"n": 2}},
            )
            assert status == 202, body
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
        # the run's record lives in process A's registry; B knows the same user from the database
        status, record = http("GET", f"{a.base}/plans/{run_id}", token)
        assert status == 200
        assert record["status"] == "completed"
        status, _ = http("GET", f"{b.base}/plans", token)
        assert status == 200
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught
        exit_codes = [stop(server.process) for server in servers]
        assert exit_codes == [-signal.SIGTERM, -signal.SIGTERM]
        for server in servers:
            log_text = server.log.read_text()
            assert "Application shutdown complete." in log_text, log_text
            assert "Traceback" not in log_text, log_text
            assert '"level":"error"' not in log_text, log_text
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
        for log in logs:
            log.close()
