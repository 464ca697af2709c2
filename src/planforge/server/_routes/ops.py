"""Operations: liveness, readiness, Prometheus metrics, and the request middlewares.

`install(app)` adds the body size limit and the request metrics; these three routes need no
token (probes and scrapers carry none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from planforge import __version__
from planforge.runtime import RedisEventBus
from planforge.server._bodies import CheckedJSONRoute
from planforge.server._state import ServiceState

__all__ = [
    "MAX_BODY_BYTES",
    "BodySizeLimitMiddleware",
    "RequestMetricsMiddleware",
    "ServiceMetrics",
    "install",
    "router",
]

MAX_BODY_BYTES: Final = 1024 * 1024
CHECK_TIMEOUT_S: Final = 2.0
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["operations"], route_class=CheckedJSONRoute)


class _StateCollector(Collector):
    """Figures read from the service at scrape time, so they never go stale between scrapes."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state: ServiceState | None = getattr(self._app.state, "service", None)
        if state is None:
            return
        figures = state.engines.metrics()
        for name, key, help_text in (
            ("planforge_engines_active", "engines_active", "Execution engines alive now."),
            ("planforge_events_sent", "events_sent", "Runtime events delivered to the bus."),
            ("planforge_events_failed", "events_failed", "Runtime events the bus refused."),
            ("planforge_runs_started", "runs_started", "Plan runs started."),
            ("planforge_runs_failed", "runs_failed", "Plan runs that failed."),
        ):
            yield GaugeMetricFamily(name, help_text, value=float(figures.get(key, 0)))
        run = figures.get("run") or {}
        durations = GaugeMetricFamily(
            "planforge_plan_duration_seconds",
            "Plan run durations over a bounded window.",
            labels=["stat"],
        )
        for stat in ("mean", "p50", "p95", "max"):
            value = run.get(stat) if isinstance(run, dict) else None
            if isinstance(value, int | float):
                durations.add_metric([stat], float(value))
        yield durations
        yield GaugeMetricFamily(
            "planforge_planners_quarantined",
            "Planners in quarantine.",
            value=float(len(state.factory.list_quarantined())),
        )
        breakers = GaugeMetricFamily(
            "planforge_planner_breaker_state",
            "Each planner's circuit breaker: 1 for its current state.",
            labels=["planner", "state"],
        )
        for name in state.factory.list_planners(include_inactive=True):
            snapshot = state.factory.describe_planner(name).get("breaker") or {}
            breakers.add_metric([name, str(snapshot.get("state", "unknown"))], 1.0)
        yield breakers


class ServiceMetrics:
    """One app's Prometheus registry (per app, so two apps in one process never collide)."""

    def __init__(self, app: FastAPI) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "planforge_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "planforge_http_request_errors",
            "HTTP requests answered with a 5xx status.",
            ["route", "method"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "planforge_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            registry=self.registry,
        )
        build = Gauge(
            "planforge_build_info", "The running planforge.", ["version"], registry=self.registry
        )
        build.labels(version=__version__).set(1)
        self.registry.register(_StateCollector(app))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        if status >= 500:
            self.errors.labels(route=route, method=method).inc()
        self.latency.labels(route=route, method=method).observe(seconds)


def _metrics_for(app: FastAPI) -> ServiceMetrics:
    metrics: ServiceMetrics | None = getattr(app.state, "metrics", None)
    if metrics is None:
        metrics = ServiceMetrics(app)
        app.state.metrics = metrics
    return metrics


class RequestMetricsMiddleware:
    """Counts and times every HTTP request under its route template (bounded label values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            _metrics_for(scope["app"]).observe(
                template, scope["method"], status, time.perf_counter() - started
            )


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413 JSON error, before a handler reads
    them: by Content-Length when given, else by counting the streamed chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            status_code=413,
            content={
                "error": "RequestTooLarge",
                "message": f"The request body is over the limit of {self.max_bytes} bytes; "
                "send a smaller body.",
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large()(scope, receive, send)
                    return
        received = 0
        over_limit = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, over_limit
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over_limit = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # the app may turn the aborted read into its own error: answer 413 instead
            nonlocal answered
            if over_limit:
                if not answered:
                    answered = True
                    await self._too_large()(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                answered = True  # too late to replace the answer; the read error stands
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not answered:
                answered = True
                await self._too_large()(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised from inside `receive` to abandon a streamed body that grew over the limit."""


def install(app: FastAPI, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Add the metrics and body-limit middlewares (the limit runs first, metrics see its 413)."""
    _metrics_for(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware)


@router.get("/livez", summary="The process is alive (checks no dependency).")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


async def _check(probe: Callable[[], Any]) -> dict[str, Any]:
    try:
        detail = await asyncio.wait_for(run_in_threadpool(probe), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT_S} s"}
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "detail": detail}


class _Check(BaseModel):
    ok: bool
    detail: Any = None


class Readiness(BaseModel):
    """`/readyz`'s answer, ready (200) or not (503): each dependency's check."""

    status: str = Field(description="ready or not ready")
    checks: dict[str, _Check]


@router.get(
    "/readyz",
    summary="Ready to serve: database, Redis (when used) and an active planner; 503 if not.",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not ready."}},
)
async def readyz(request: Request) -> JSONResponse:
    state: ServiceState = request.app.state.service

    def database() -> str:
        with state.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "reachable"

    def planners() -> str:
        count = len(state.factory.list_planners())  # active or not yet checked: selectable
        if count < 1:
            raise RuntimeError("no selectable planner; see GET /diagnostics")
        return f"{count} selectable"

    checks = {"database": await _check(database), "planners": await _check(planners)}
    if isinstance(state.bus, RedisEventBus):
        client = state.bus._client  # the bus has no public ping; its client is a redis.Redis

        def redis() -> str:
            client.ping()
            return "pong"

        checks["redis"] = await _check(redis)
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not ready", "checks": checks},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    registry = _metrics_for(request.app).registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(content=body, media_type=PROMETHEUS_CONTENT_TYPE)
