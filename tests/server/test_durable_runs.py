"""Runs live in the database: two replicas answer for each other's runs, a killed server loses
none, and a cancel reaches the replica running the run. Real `planforge serve` processes, real
PostgreSQL and Redis (the kill test also runs on a SQLite file)."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from planforge.configstore import ConfigStore
from tests.server._served import http, serving
from tests.server.test_multiprocess import postgres_schema, start_server, wait_until_live

SLOW = """
import os, time
from planforge.contract import Planner, PlanStep


class Slow(Planner):
    name = "slow"
    version = "1.0.0"
    keywords = ("slow",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.8
    accepts_run = True

    def plan(self, objective, context, *, run=None):
        for _ in range(int(context.get("ticks", 10))):
            time.sleep(0.1)
            if run is not None:
                run.check()
        step = PlanStep(id="1", action="slept", params={"pid": os.getpid()})
        return self.new_plan(objective, [step])
"""
FINAL = {"completed", "failed", "cancelled", "interrupted"}
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _env(tmp_path: Path, database: str, **extra: str) -> dict[str, str]:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "dr_slow.py").write_text(textwrap.dedent(SLOW))
    env = {**os.environ, "PLANFORGE_DATABASE_URL": database, "FACTORY_PLUGIN_DIRS": str(plugins)}
    env.pop("PLANFORGE_REDIS_URL", None)
    env.update(FACTORY_SANDBOX_TIMEOUT_S="30", PLANFORGE_RUN_LEASE_S="2", **extra)
    return env


def _token(database: str, user: str = "alice", role: str = "operator") -> str:
    with ConfigStore(database) as store:
        return store.create_user(user, role)[1]


def _wait_final(base: str, token: str, run_id: str, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        status, record = http("GET", f"{base}/plans/{run_id}", token)
        assert status == 200, record
        if record["status"] in FINAL or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def test_a_run_started_on_one_replica_is_read_listed_streamed_and_cancelled_through_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    with ExitStack() as stack:
        database = stack.enter_context(postgres_schema())
        token = _token(database)
        env = _env(tmp_path, database, PLANFORGE_REDIS_URL=redis_url)
        a, b = (
            stack.enter_context(serving({**env, **_dirs(tmp_path, name)}, tmp_path / name))
            for name in ("a", "b")
        )
        done = _start(a, token, ticks=1)
        record = _wait_final(b, token, done)  # read through the other replica
        assert record["status"] == "completed"
        assert record["plan"]["steps"][0]["action"] == "slept"
        assert record["planner"] == "slow"
        with connect(
            f"{b.replace('http', 'ws', 1)}/ws/events",
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as events:
            slow = _start(a, token, ticks=600)  # a minute, unless cancelled
            first = json.loads(events.recv(timeout=20))
            assert first["run_id"] == slow
            assert first["type"] == "agent_started"
            status, listed = http("GET", f"{b}/plans?status=running", token)
            assert status == 200
            assert [run["run_id"] for run in listed["runs"]] == [slow]
            status, cancelled = http("DELETE", f"{b}/plans/{slow}", token)
            assert status == 200, cancelled
            received = [first]
            while received[-1]["type"] not in {"agent_completed", "agent_error"}:
                received.append(json.loads(events.recv(timeout=20)))
        assert received[-1]["type"] == "agent_error"
        assert "cancel" in json.dumps(received[-1]["payload"]).lower()
        record = _wait_final(a, token, slow)
        assert record["status"] == "cancelled"
        status, again = http("DELETE", f"{a}/plans/{slow}", token)
        assert status == 409  # it already ended
        assert again["error"] == "RunFinished"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_server_loses_no_run(tmp_path: Path, backend: str) -> None:
    with ExitStack() as stack:
        if backend == "sqlite":
            database = f"sqlite:///{tmp_path / 'store.db'}"
        else:
            database = stack.enter_context(postgres_schema())
        token = _token(database)
        env = _env(tmp_path, database, PLANFORGE_WORKERS="1", PLANFORGE_MAX_RUNS_PER_USER="20")
        server, log = start_server(env, tmp_path, "first")
        stack.callback(log.close)
        try:
            wait_until_live(server.process, server.base, server.log)
            runs = [_start(server.base, token, ticks=10) for _ in range(10)]
            time.sleep(0.5)  # some running, most waiting for the one worker
        finally:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
        base = stack.enter_context(serving({**env, **_dirs(tmp_path, "second")}, tmp_path / "2"))
        records = [_wait_final(base, token, run_id, within_s=120) for run_id in runs]
    assert {record["status"] for record in records} <= FINAL, records
    assert sum(record["status"] == "completed" for record in records) >= 8, records
    assert all(record["attempts"] <= 2 for record in records)


def _start(base: str, token: str, *, ticks: int) -> str:
    body = {"objective": "sleep", "planner": "slow", "context": {"ticks": ticks}, "timeout_s": 120}
    status, started = http("POST", f"{base}/plans", token, body)
    assert status == 202, started
    run_id: str = started["run_id"]
    return run_id


def _dirs(tmp_path: Path, name: str) -> dict[str, str]:
    return {
        "FACTORY_CACHE_DIR": str(tmp_path / f"{name}-cache"),
        "FACTORY_STATE_DIR": str(tmp_path / f"{name}-state"),
    }
