"""`POST /plans` with `explain` on a real `planforge serve`: the request crosses the runs
table and the pipe to a worker process, and the run's record carries the plan's explanation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server._served import Served, http, served_planforge

EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "portfolio.json").read_text()
)
OBJECTIVE = "Rebalance my portfolio"
#: A bound on waits, never a timing assertion: a loaded 2-core VM must still pass.
WAIT_S = 90.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("explain"),
        users={"alice": "operator"},
        arguments=("--log-level", "warning"),
    ) as running:
        yield running


def finished(served: Served, run_id: str, query: str = "") -> dict[str, Any]:
    """The run once it has ended (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        url = f"{served.base}/plans/{run_id}{query}"
        status, record = http("GET", url, served.tokens["alice"])
        assert status == 200, record
        if record["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def start(served: Served, **body: Any) -> str:
    request = {"objective": OBJECTIVE, "context": EXAMPLE, "planner": "holistic", **body}
    status, answer = http("POST", f"{served.base}/plans", served.tokens["alice"], request)
    assert status == 202, answer
    run_id: str = answer["run_id"]
    return run_id


def test_a_run_asked_to_explain_records_the_explanation_with_its_plan(served: Served) -> None:
    record = finished(served, start(served, explain=True))
    assert record["status"] == "completed", record["error"]
    plan = record["plan"]
    explanation = plan["explanation"]
    assert explanation["plan_steps"] == len(plan["steps"]) > 0
    assert [c["module"].split(".")[0] for c in explanation["calculators"]] == [
        "opportunity_calculators"
    ] * len(explanation["calculators"])
    assert explanation["calculators"][0]["candidates"]
    evaluation = explanation["evaluation"]
    assert evaluation["evaluated"] == evaluation["feasible"] + evaluation["infeasible"]
    assert explanation["feasibility"]["kept"] == evaluation["evaluated"]
    # the request is kept with the run (a replica taking it up explains it too); the
    # planner never read the key as part of the portfolio
    stored = finished(served, record["run_id"], "?context=true")
    assert stored["context"]["planner_explain"] is True


def test_a_run_not_asked_to_explain_has_no_explanation(served: Served) -> None:
    record = finished(served, start(served))
    assert record["status"] == "completed", record["error"]
    assert "explanation" not in record["plan"]


def test_explain_must_be_a_boolean(served: Served) -> None:
    body = {"objective": OBJECTIVE, "context": EXAMPLE, "explain": "yes"}
    status, answer = http("POST", f"{served.base}/plans", served.tokens["alice"], body)
    assert status == 422, answer
    assert "explain" in json.dumps(answer)
