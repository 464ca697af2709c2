"""Probes, Prometheus metrics and the request body limit, through the ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from planforge.configstore import ConfigStore
from planforge.runtime import InProcessEventBus
from planforge.server import create_app
from planforge.server._routes import ops
from tests.server.test_auth import Service, assert_error_json, build_factory, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("ops")) as running:
        yield running


def test_livez_answers_without_a_token(service: Service) -> None:
    response = service.client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_reports_each_check(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "planners"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["planners"]["detail"] == "1 selectable"


def test_readyz_is_503_without_an_active_planner(tmp_path: Path) -> None:
    with running_service(tmp_path, with_planner=False) as bare:
        response = bare.client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["planners"]["ok"] is False
    assert "no selectable planner" in checks["planners"]["detail"]


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-directory"
    blocker.mkdir()
    store = ConfigStore(f"sqlite:///{blocker}")  # SQLite cannot open a directory
    factory = build_factory(tmp_path)
    bus = InProcessEventBus()
    app = create_app(factory=factory, store=store, bus=bus)

    async def scenario() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                live = await client.get("/livez")
                assert live.status_code == 200  # liveness checks no dependency
                return await client.get("/readyz")

    try:
        response = asyncio.run(scenario())
    finally:
        bus.close()
        factory.close()
        store.close()
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["planners"]["ok"] is True
    assert "Traceback" not in response.text


def test_metrics_count_requests_by_route_template(service: Service) -> None:
    viewer = service.auth("viewer")
    assert service.client.get("/planners/holistic", headers=viewer).status_code == 200
    service.client.get("/planners/no-such-planner", headers=viewer)
    service.client.get("/planners")  # 401
    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'route="/planners/{name}"' in text
    assert "no-such-planner" not in text  # label values are templates, never raw paths
    assert 'planforge_http_requests_total{method="GET",route="/planners",status="401"}' in text
    assert "planforge_http_request_duration_seconds_bucket" in text
    assert 'planforge_build_info{version="' in text
    for name in (
        "planforge_engines_active",
        "planforge_events_sent",
        "planforge_events_failed",
        "planforge_planners_quarantined",
    ):
        assert f"\n{name} " in text, name
    assert 'planforge_planner_breaker_state{planner="holistic",state="closed"} 1.0' in text


def test_metrics_registries_are_per_app(tmp_path: Path, service: Service) -> None:
    with running_service(tmp_path) as other:
        other.client.get("/livez")
        text = other.client.get("/metrics").text
    assert 'route="/planners/{name}"' not in text
    assert 'route="/livez"' in text


def test_a_declared_body_over_the_limit_is_413(service: Service) -> None:
    body = b'{"objective": "' + b"x" * (70 * 1024) + b'"}'
    response = service.client.post(
        "/planners/select",
        content=body,
        headers={**service.auth("viewer"), "content-type": "application/json"},
    )
    assert_error_json(response, 413, "RequestTooLarge")


def test_a_streamed_body_over_the_limit_is_413(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"objective": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(
                "/planners/select",
                content=chunks(),
                headers={**service.auth("viewer"), "content-type": "application/json"},
            )

    response = asyncio.run(scenario())
    assert "content-length" not in {key.lower() for key in response.request.headers}
    assert_error_json(response, 413, "RequestTooLarge")


def test_a_body_under_the_limit_passes(service: Service) -> None:
    response = service.client.post(
        "/planners/select",
        json={"objective": "rebalance my portfolio"},
        headers=service.auth("viewer"),
    )
    assert response.status_code == 200, response.text


def test_install_keeps_one_registry_per_app(tmp_path: Path) -> None:
    app = create_app()
    ops.install(app)
    first = app.state.metrics
    assert isinstance(first, ops.ServiceMetrics)
    assert ops._metrics_for(app) is first
