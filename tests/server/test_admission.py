"""`POST /abtest` plans, so it is admitted like `POST /plans`: a real `planforge serve`.

Before, a viewer could run it, outside the per-user run limit, with no timeout and with a
context nobody had validated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server._served import Served, http, served_planforge
from tests.server.test_plans import PLUGINS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("admission"),
        users={"viewer": "viewer", "operator": "operator"},
        plugins={"srv_gated": PLUGINS["srv_gated"]},
        env={"PLANFORGE_MAX_RUNS_PER_USER": "1"},
    ) as running:
        yield running


def abtest(served: Served, role: str, **changes: Any) -> tuple[int, dict[str, Any]]:
    context = json.loads(EXAMPLE.read_text())
    context["positions"] = context["positions"][:3]
    body = {"config_a": "default", "config_b": "conservative", "context": context, **changes}
    return http("POST", f"{served.base}/abtest", served.tokens[role], body)


def test_a_viewer_cannot_plan_through_abtest(served: Served) -> None:
    status, body = abtest(served, "viewer")
    assert status == 403, body
    assert body["error"] == "PermissionDenied"
    assert "operator" in body["message"]


def test_an_operator_compares_two_configurations(served: Served) -> None:
    status, body = abtest(served, "operator")
    assert status == 200, body
    assert body["winner"] in {"a", "b", "tie"}


def test_a_context_the_planner_cannot_read_is_a_422_naming_the_field(served: Served) -> None:
    context = json.loads(EXAMPLE.read_text())
    context["positions"][0]["current_price"] = -5
    status, body = abtest(served, "operator", context=context)
    assert status == 422, body
    assert body["field"] == "positions[0].current_price"


def test_abtest_counts_against_the_run_limit(served: Served) -> None:
    gate = served.tmp_path / "gate"
    status, started = http(
        "POST",
        f"{served.base}/plans",
        served.tokens["operator"],
        {"objective": "wait", "planner": "gated", "context": {"gate": str(gate)}},
    )
    assert status == 202, started
    try:
        status, body = abtest(served, "operator")
        assert status == 429, body
        assert body["error"] == "RunLimitExceeded"
    finally:
        gate.touch()
    deadline = time.monotonic() + 30
    while True:  # the slot frees once the gated run ends
        status, body = abtest(served, "operator")
        if status != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200, body


def test_abtest_answers_504_past_its_timeout(served: Served) -> None:
    status, body = abtest(served, "operator", timeout_s=0.001)
    assert status == 504, body
    assert body["error"] == "RunTimeout"
