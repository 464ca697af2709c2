"""Isolation under load on a real `planforge serve` process: 200 users, 200 WebSockets,
200 concurrent runs; each user receives exactly their own run's events, all of them, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.server._served import Served, http, served_planforge
from tests.server.test_plans import PLUGINS

USERS = 200
TERMINAL = frozenset({"agent_completed", "agent_error"})
#: Bounds for waits, never timing assertions: a loaded 2-core VM must still pass.
WAIT_S = 60.0
QUIET_S = 0.5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("isolation"),
        users={f"user{index:03d}": "operator" for index in range(USERS)},
        plugins={"srv_echo": PLUGINS["srv_echo"]},
        arguments=("--log-level", "warning"),
    ) as running:
        yield running


async def _one_user(
    served: Served,
    client: httpx.AsyncClient,
    user: str,
    connected: asyncio.Barrier,
    finished: asyncio.Barrier,
) -> tuple[str, list[dict[str, Any]]]:
    """Connect, wait until everyone is connected, start one run, read until it ends, then
    keep listening until every user's run has ended (a stray event would arrive then)."""
    token = served.tokens[user]
    ws_url = served.base.replace("http://", "ws://") + f"/ws/events?token={token}"
    async with websockets.connect(ws_url, open_timeout=WAIT_S, ping_interval=None) as socket:
        await connected.wait()  # every socket is open before any run publishes an event
        response = await client.post(
            "/plans",
            json={"objective": f"echo for {user}", "planner": "echo", "context": {"n": 2}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 202, response.text
        run_id: str = response.json()["run_id"]
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] not in TERMINAL:
            events.append(json.loads(await asyncio.wait_for(socket.recv(), WAIT_S)))
        await finished.wait()
        with contextlib.suppress(TimeoutError):
            events.append(json.loads(await asyncio.wait_for(socket.recv(), QUIET_S)))
    return run_id, events


async def _all_users(served: Served) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    users = sorted(served.tokens)
    connected = asyncio.Barrier(len(users))
    finished = asyncio.Barrier(len(users))
    limits = httpx.Limits(max_connections=len(users), max_keepalive_connections=len(users))
    async with (
        httpx.AsyncClient(base_url=served.base, limits=limits, timeout=WAIT_S) as client,
        asyncio.timeout(WAIT_S * 2),
    ):
        results = await asyncio.gather(
            *(_one_user(served, client, user, connected, finished) for user in users)
        )
    return dict(zip(users, results, strict=True))


def test_200_users_each_receive_only_their_own_run_events_complete_and_in_order(
    served: Served,
) -> None:
    streams = asyncio.run(_all_users(served))

    run_ids = [run_id for run_id, _ in streams.values()]
    assert len(set(run_ids)) == USERS  # every run has its own id
    for user, (run_id, events) in sorted(streams.items()):
        # owner only: nothing of another user or another run, even after every run ended
        assert {event["user_id"] for event in events} == {user}, user
        assert {event["run_id"] for event in events} == {run_id}, user
        # none lost, in order: the run's and the user's sequences count 1, 2, 3, ...
        assert [event["sequence"] for event in events] == list(range(1, len(events) + 1)), user
        assert [event["user_sequence"] for event in events] == list(range(1, len(events) + 1))
        assert [event["type"] for event in events] == [
            "agent_started",
            "agent_thinking",
            "agent_completed",
        ], user


def test_each_user_reads_their_own_runs_and_not_another_users(served: Served) -> None:
    alice, bob = "user000", "user001"
    status, body = http(
        "POST",
        f"{served.base}/plans",
        served.tokens[alice],
        {"objective": "echo", "planner": "echo"},
    )
    assert status == 202
    run_id = body["run_id"]
    deadline = time.monotonic() + WAIT_S
    while True:
        status, record = http("GET", f"{served.base}/plans/{run_id}", served.tokens[alice])
        assert status == 200
        if record["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert record["status"] == "completed"
    status, body = http("GET", f"{served.base}/plans", served.tokens[alice])
    assert status == 200
    assert run_id in [run["run_id"] for run in body["runs"]]
    assert {run["user"] for run in body["runs"]} == {alice}
    status, body = http("GET", f"{served.base}/plans/{run_id}", served.tokens[bob])
    assert status == 404
    assert body["error"] == "RunNotFound"
    status, body = http("GET", f"{served.base}/plans", served.tokens[bob])
    assert status == 200
    assert run_id not in [run["run_id"] for run in body["runs"]]
