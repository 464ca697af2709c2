"""The FastAPI application: one factory, one store, one event bus, one engine factory.

`create_app()` builds them from the environment (or takes them ready-made, for tests and
embedding) in the lifespan, and every error leaves as JSON with a message, never a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from planforge import __version__
from planforge.configstore import ConfigStore
from planforge.errors import PlannerError
from planforge.factory import PlannerFactory
from planforge.logs import get_logger
from planforge.runtime import (
    EventBus,
    ExecutionEngineFactory,
    event_bus_from_settings,
    load_runtime_settings,
)
from planforge.server._requestlog import RequestLogMiddleware
from planforge.server._responses import error_content, status_for
from planforge.server._routes import configs, console, events, ops, planners, plans
from planforge.server._runs import RunService
from planforge.server._state import ServiceState

__all__ = ["create_app"]

_log = get_logger("server")
#: Where the service plans when PLANFORGE_EXECUTOR is unset: worker processes, so a plugin
#: planner is never imported into the server and cannot take it down.
SERVICE_EXECUTOR = "process"


def create_app(
    *,
    factory: PlannerFactory | None = None,
    store: ConfigStore | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    """The service. Collaborators not given are built from the environment at startup."""
    app = FastAPI(
        title="planforge",
        version=__version__,
        description="Planner factory and runtime: select, plan, configure, stream events.",
        lifespan=_lifespan(factory, store, bus),
    )
    app.add_exception_handler(PlannerError, _planforge_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
    for module in (ops, planners, configs, plans, events, console):
        app.include_router(module.router)
    ops.install(app)  # body size limit and request metrics
    app.add_middleware(RequestLogMiddleware)  # outermost: every request gets an id first
    return app


def _lifespan(
    factory: PlannerFactory | None, store: ConfigStore | None, bus: EventBus | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Build what was not given at startup; close, at shutdown, only what was built here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = load_runtime_settings()
        # Each run holds a thread while its worker plans, and the runs table is written from
        # threads too: the default pool (cores + 4) would let waiting runs starve those writes.
        threads = ThreadPoolExecutor(max(32, 8 * settings.workers), "planforge")
        asyncio.get_running_loop().set_default_executor(threads)
        the_factory = factory if factory is not None else PlannerFactory()
        the_store = store if store is not None else ConfigStore.from_environment()
        the_bus = bus if bus is not None else event_bus_from_settings(settings)
        engines = ExecutionEngineFactory(
            the_factory,
            bus=the_bus,
            store=the_store,
            settings=settings,
            executor=settings.executor or SERVICE_EXECUTOR,
        )
        runs = RunService(the_store, engines, lease_s=settings.run_lease_s)
        app.state.service = ServiceState(
            factory=the_factory, store=the_store, bus=the_bus, engines=engines, runs=runs
        )
        engines.start()
        await runs.start()
        watcher = asyncio.create_task(app.state.service.streams.watch(), name="stream-tokens")
        _log.info("service started", version=__version__)
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await runs.aclose()
            await engines.aclose()
            app.state.service.tokens.flush()  # the last uses gathered, before the store closes
            if bus is None:
                the_bus.close()
            if store is None:
                the_store.close()
            if factory is None:
                the_factory.close()
            _log.info("service stopped")

    return lifespan


async def _planforge_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, PlannerError)  # registered for this class only
    return JSONResponse(status_code=status_for(error), content=error_content(error))


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # registered for this class only
    return JSONResponse(
        status_code=error.status_code,
        content={"error": "HTTPError", "message": str(error.detail)},
        headers=getattr(error, "headers", None),
    )


async def _invalid_request(_: Request, error: Exception) -> JSONResponse:
    """One message naming the first problem; every problem listed beside it."""
    assert isinstance(error, RequestValidationError)  # registered for this class only
    problems: list[dict[str, Any]] = [
        {"loc": list(item.get("loc", ())), "message": str(item.get("msg", ""))}
        for item in error.errors()
    ]
    first: dict[str, Any] = problems[0] if problems else {"loc": [], "message": "invalid"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"invalid request: {where}: {first['message']}" if where else first["message"]
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s), listed in `problems`)"
    return JSONResponse(
        status_code=422,
        content={"error": "InvalidRequest", "message": message, "problems": problems},
    )


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    _log.error("unexpected error", error_type=type(error).__name__, error=str(error))
    return JSONResponse(
        status_code=500,
        content={"error": "InternalError", "message": "the server failed; see its logs"},
    )
