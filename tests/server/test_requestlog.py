from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.logs import configure_logging
from tests.server.test_plans import Service, make_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    yield from make_service(tmp_path)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_every_request_gets_an_id_in_the_response_and_the_log(service: Service) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    response = service.client.get("/livez")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    logged = [line for line in _lines(stream) if line.get("msg") == "request"]
    assert logged[-1]["request_id"] == request_id
    assert logged[-1]["status"] == 200
    assert logged[-1]["route"] == "/livez"


def test_a_callers_request_id_reaches_the_run(service: Service) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    response = service.client.post(
        "/plans",
        json={"objective": "echo", "planner": "echo", "context": {}},
        headers={**service.auth("alice"), "X-Request-ID": "req-42"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == "req-42"
    started = [line for line in _lines(stream) if line.get("msg") == "run started"]
    assert started[-1]["request_id"] == "req-42"
    assert started[-1]["run_id"] == response.json()["run_id"]


def test_an_unsafe_request_id_is_replaced(service: Service) -> None:
    response = service.client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
