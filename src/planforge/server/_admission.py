"""Admission for work that plans inside a request (`POST /abtest`), as `POST /plans` admits a run.

A request that plans is validated first (a context its planner cannot read is a 422 naming
the field, and nothing runs), then takes a slot in the user's run limit (429 when the user
already has `PLANFORGE_MAX_RUNS_PER_USER` going) and runs off the event loop under the run
timeout (504). The slot is held until the work really ends: a thread cannot be killed, so
work that outlives its timeout keeps counting against the user's limit until it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from planforge.configstore import User
from planforge.runtime import UserExecutionContext
from planforge.runtime.errors import RunTimeout
from planforge.server._state import ServiceState

__all__ = ["run_admitted"]

T = TypeVar("T")


async def run_admitted(
    state: ServiceState,
    request: Request,
    user: User,
    work: Callable[[], T],
    *,
    objective: str,
    context: Mapping[str, Any],
    planner: str,
    timeout_s: float | None = None,
) -> T:
    """Validate `context` for `planner`, take a run slot, and run `work` under the timeout."""
    await run_in_threadpool(
        state.engines.admit_context, objective, context, planner=planner
    )  # InvalidContext -> 422, before anything else
    execution = UserExecutionContext.create(
        user.name, request_id=getattr(request.state, "request_id", None)
    )
    engine = state.engines.create_for_user(execution)  # RunLimitExceeded -> 429
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(None, work)
    except BaseException:
        state.engines.cleanup(engine)
        raise

    def release(done: asyncio.Future[T]) -> None:
        state.engines.cleanup(engine)
        if not done.cancelled():
            done.exception()  # retrieved: an error after a timeout is the 504's, not a warning

    future.add_done_callback(release)
    limit = state.engines.settings.run_timeout_s if timeout_s is None else timeout_s
    try:
        return await asyncio.wait_for(asyncio.shield(future), limit)
    except TimeoutError:
        raise RunTimeout(execution.run_id, planner, limit) from None
