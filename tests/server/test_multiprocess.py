"""Two `planforge serve` processes on one database: a run started through one is streamed to
a WebSocket client of the other (PostgreSQL and Redis), and a token revoked or rotated by the
real CLI is refused by both within a second although each caches its lookups (on a SQLite file
and on PostgreSQL)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import create_engine, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from planforge.configstore import ConfigStore, token_digest
from planforge.configstore._db import normalise_url
from planforge.server._tokens import EPOCH_CHECK_S
from tests.server._served import free_port, http, serving, stop, wait_until_live
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


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a fresh PostgreSQL schema, dropped afterwards."""
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
def database_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


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


# -- revocation reaches every process ---------------------------------------------------------

#: How soon after `planforge user revoke` (or `rotate`) returns every server must refuse.
REFUSED_WITHIN_S = 1.0


@dataclass
class Pair:
    """Two live servers on one database, and the environment that names it."""

    url: str
    bases: list[str]
    env: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp_path = tmp_path_factory.mktemp(f"pair-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'shared.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        env = {**os.environ, "PLANFORGE_DATABASE_URL": url}
        env.pop("PLANFORGE_REDIS_URL", None)
        bases = [
            stack.enter_context(
                serving(
                    {
                        **env,
                        "FACTORY_CACHE_DIR": str(tmp_path / f"{name}-cache"),
                        "FACTORY_STATE_DIR": str(tmp_path / f"{name}-state"),
                    },
                    tmp_path / f"{name}.log",
                )
            )
            for name in ("a", "b")
        ]
        yield Pair(url, bases, env)


def planforge(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "planforge.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def statuses(pair: Pair, token: str) -> list[int]:
    return [http("GET", f"{base}/plans", token)[0] for base in pair.bases]


def first_refusals(pair: Pair, token: str, give_up_after_s: float = 20.0) -> list[float]:
    """Poll both servers until each has refused `token` (401); when each first did so."""
    refused: dict[str, float] = {}
    give_up = time.monotonic() + give_up_after_s
    while len(refused) < len(pair.bases) and time.monotonic() < give_up:
        for base in pair.bases:
            if base in refused:
                continue
            status, body = http("GET", f"{base}/plans", token)
            if status == 401:
                refused[base] = time.monotonic()
            else:
                assert status == 200, body
        time.sleep(0.01)
    return [refused.get(base, math.inf) for base in pair.bases]


def open_streams(stack: ExitStack, pair: Pair, token: str) -> list[ClientConnection]:
    """An event stream on each server, authenticated the browser's way (subprotocols)."""
    offered = [Subprotocol("planforge.v1"), Subprotocol(f"planforge.token.{token}")]
    return [
        stack.enter_context(
            connect(f"{base.replace('http', 'ws', 1)}/ws/events", subprotocols=offered)
        )
        for base in pair.bases
    ]


def close_codes(streams: list[ClientConnection]) -> list[int]:
    """The code each stream is closed with; it must close (generous deadline), sending nothing."""
    codes = []
    for stream in streams:
        with pytest.raises(ConnectionClosed) as closed:
            stream.recv(timeout=10)
        assert closed.value.rcvd is not None
        codes.append(closed.value.rcvd.code)
    return codes


def test_a_revoked_token_is_refused_by_every_server_within_a_second(pair: Pair) -> None:
    with ConfigStore(pair.url) as store, ExitStack() as stack:
        _, token = store.create_user("rita", "operator")
        assert statuses(pair, token) == [200, 200]
        streams = open_streams(stack, pair, token)
        # forget the token in the database behind the servers' backs (no revocation, so the
        # auth epoch stays): both go on accepting it from their caches, epoch checks and all
        with store.engine.begin() as connection:
            connection.execute(
                text("UPDATE api_users SET token_hash = :forgotten WHERE name = 'rita'"),
                {"forgotten": token_digest("forgotten")},
            )
        time.sleep(EPOCH_CHECK_S * 3)
        assert statuses(pair, token) == [200, 200]
        revoked = planforge(pair.env, "user", "revoke", "rita")
        returned = time.monotonic()
        assert revoked.returncode == 0, revoked.stderr
        refused_after = [at - returned for at in first_refusals(pair, token)]
        assert max(refused_after) <= REFUSED_WITHIN_S, refused_after
        assert statuses(pair, token) == [401, 401]
        assert close_codes(streams) == [4401, 4401]  # streams opened before are cut too


def test_a_rotated_away_token_is_refused_by_every_server_within_a_second(pair: Pair) -> None:
    with ConfigStore(pair.url) as store:
        _, old = store.create_user("otto", "operator")
    assert statuses(pair, old) == [200, 200]
    with ExitStack() as stack:
        streams = open_streams(stack, pair, old)
        rotated = planforge(pair.env, "user", "rotate", "otto")
        returned = time.monotonic()
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip()
        assert new.startswith("pf_")
        assert new != old
        refused_after = [at - returned for at in first_refusals(pair, old)]
        assert max(refused_after) <= REFUSED_WITHIN_S, refused_after
        assert statuses(pair, new) == [200, 200]
        assert statuses(pair, old) == [401, 401]
        assert close_codes(streams) == [4401, 4401]
