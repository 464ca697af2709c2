"""`POST /plans` admits the context before anything starts, on a real `planforge serve`.

One user's bad contexts are that user's errors (422 naming the field, nothing started) and
never count against the planner another user's valid run needs: it is planned by `holistic`,
not by a fallback, and the holistic breaker stays closed with no failure recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.server._served import Served, http, served_planforge

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO: dict[str, Any] = json.loads((ROOT / "examples" / "portfolio.json").read_text())
OBJECTIVE = "Rebalance my portfolio"
#: A bound on waits, never a timing assertion: a loaded 2-core VM must still pass.
WAIT_S = 90.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("admission"),
        users={"alice": "operator", "bob": "operator"},
        arguments=("--log-level", "warning"),
    ) as running:
        yield running


def portfolio(**position: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(PORTFOLIO))
    data["positions"][0].update(position)
    return data


def finished(served: Served, user: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        status, record = http("GET", f"{served.base}/plans/{run_id}", served.tokens[user])
        assert status == 200, record
        if record["status"] != "running" or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def metric(served: Served, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{served.base}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def _events_of_next_run(served: Served, user: str, body: dict[str, Any]) -> tuple[str, list]:
    """Open the user's event stream, start a run, read until it ends: every event the user
    received since the stream opened."""
    token = served.tokens[user]
    url = served.base.replace("http://", "ws://") + f"/ws/events?token={token}"
    async with websockets.connect(url, open_timeout=WAIT_S, ping_interval=None) as socket:
        status, answer = await asyncio.to_thread(http, "POST", f"{served.base}/plans", token, body)
        assert status == 202, answer
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] not in {"agent_completed", "agent_error"}:
            events.append(json.loads(await asyncio.wait_for(socket.recv(), WAIT_S)))
    return answer["run_id"], events


def test_bad_contexts_of_one_user_never_break_planning_for_another(served: Served) -> None:
    alice = served.tokens["alice"]
    bad = {"objective": OBJECTIVE, "context": portfolio(current_price=-5)}
    for _ in range(8):  # more than the breaker's minimum number of calls
        status, body = http("POST", f"{served.base}/plans", alice, bad)
        assert status == 422, body
        assert body["error"] == "ContextError"
        assert body["field"] == "positions[0].current_price"
        assert body["kind"] == "portfolio"
        assert "positions[0].current_price" in body["message"]
    # nothing was started for them: no run recorded, no engine, no run counted
    assert http("GET", f"{served.base}/plans", alice) == (200, {"runs": []})
    assert metric(served, "planforge_runs_started") == 0
    assert metric(served, "planforge_engines_active") == 0

    status, started = http(
        "POST",
        f"{served.base}/plans",
        served.tokens["bob"],
        {"objective": OBJECTIVE, "context": PORTFOLIO},
    )
    assert status == 202, started
    record = finished(served, "bob", started["run_id"])
    assert record["status"] == "completed", record
    assert record["plan"]["planner"]["name"] == "holistic"  # not a fallback

    status, holistic = http("GET", f"{served.base}/planners/holistic", served.tokens["bob"])
    assert status == 200
    assert holistic["breaker"]["state"] == "closed"
    assert holistic["breaker"]["failures_in_window"] == 0
    assert (holistic["stats"]["invocations"], holistic["stats"]["failures"]) == (1, 0)
    assert holistic["context_kind"] == "portfolio"
    assert holistic["context_validator"] == "planforge.portfolio.context:validate_context"

    # and alice's own stream carries nothing from the refused requests: the first event she
    # receives is her next, valid run's
    run_id, events = asyncio.run(
        _events_of_next_run(served, "alice", {"objective": OBJECTIVE, "context": PORTFOLIO})
    )
    assert {event["run_id"] for event in events} == {run_id}
    assert events[0]["type"] == "agent_started"
    assert events[0]["sequence"] == 1


@pytest.mark.parametrize(
    ("position", "field", "problem"),
    [
        ({"quantity": 1e308}, "positions[0].quantity", "must be a finite number at most 1e12"),
        # JSON has no inf or nan: `Infinity` and `NaN` are refused as the body is read, naming
        # the field by its place in the body
        ({"current_price": float("inf")}, "context.positions[0].current_price", "finite number"),
        ({"average_price": float("nan")}, "context.positions[0].average_price", "finite number"),
        ({"quantity": 1e12, "current_price": 1e9}, "positions[0]", "at most 1e15"),
    ],
)
def test_non_finite_and_overflowing_numbers_are_refused_naming_the_field(
    served: Served, position: dict[str, Any], field: str, problem: str
) -> None:
    body = {"objective": OBJECTIVE, "context": portfolio(**position)}
    status, answer = http("POST", f"{served.base}/plans", served.tokens["bob"], body)
    assert status == 422, answer
    assert answer["field"] == field
    assert problem in answer["message"]


def test_a_named_planner_validates_as_its_kind_and_an_explicit_kind_is_honoured(
    served: Served,
) -> None:
    bob = served.tokens["bob"]
    bad = portfolio(current_price=-5)
    for extra in ({"planner": "holistic"}, {"context_kind": "portfolio"}):
        status, answer = http(
            "POST", f"{served.base}/plans", bob, {"objective": OBJECTIVE, "context": bad, **extra}
        )
        assert (status, answer["field"]) == (422, "positions[0].current_price"), extra
    status, answer = http(
        "POST",
        f"{served.base}/plans",
        bob,
        {"objective": OBJECTIVE, "context": PORTFOLIO, "context_kind": "nonsense_kind"},
    )
    assert status == 400
    assert "Known kinds:" in answer["message"]
