"""Routes: plans. Operators start runs in the background; each user reads only their own.

`POST /plans` first admits the context (its kind decided and the context validated, off the
event loop): a context its planner cannot read is the caller's error, answered 422 naming the
field, with nothing started. Then it answers 202 with the run id as soon as the run's engine
exists (so the per-user run limit answers 429 right away); the run goes on in an asyncio task
and its outcome lands in the run registry. The run id is the execution context's, the one
every event of the run carries, so a client can match `GET /ws/events` traffic to its runs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from planforge.errors import InvalidContext, PlannerError, shown_value
from planforge.logs import get_logger
from planforge.runtime import ExecutionEngine, UserExecutionContext
from planforge.server._auth import Operator, Viewer, service
from planforge.server._bodies import CheckedJSONRoute
from planforge.server._responses import GUARDED, WITH_BODY, errors
from planforge.server._runs import RunRegistry
from planforge.server._state import ServiceState

__all__ = ["PlanRequest", "router", "runs_of"]

router = APIRouter(tags=["plans"], route_class=CheckedJSONRoute)
_log = get_logger("server.plans")
_ERROR_TEXT_LIMIT = 2000


class PlanRequest(BaseModel):
    """What to plan: by objective (factory selection), by `planner` name, or by `bucket`."""

    # strict: `true` is not a number and `0` is not a boolean
    model_config = ConfigDict(extra="forbid", strict=True)

    objective: str = Field(min_length=1, max_length=10_000, description="What to plan.")
    context: dict[str, Any] = Field(default_factory=dict, description="The planner's input.")
    planner: str | None = Field(default=None, min_length=1, max_length=128)
    bucket: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_s: float | None = Field(default=None, gt=0.0, le=3600.0)
    context_kind: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The kind of the context (for example portfolio); inferred when absent.",
    )


def runs_of(state: ServiceState) -> RunRegistry:
    """The service's run registry, made on first use."""
    if state.runs is None:
        state.runs = RunRegistry()
    registry: RunRegistry = state.runs
    return registry


def _not_found(run_id: str) -> JSONResponse:
    return JSONResponse(
        status_code=404,
        content={
            "error": "RunNotFound",
            "message": f"No run {shown_value(run_id)} among your runs; list them with GET /plans.",
        },
    )


async def _run_in_background(
    state: ServiceState,
    registry: RunRegistry,
    engine: ExecutionEngine,
    body: PlanRequest,
    context_kind: str | None,
) -> None:
    user, run_id = engine.user_id, engine.run_id
    try:
        plan = await engine.run(
            body.objective,
            body.context,
            planner=body.planner,
            bucket=body.bucket,
            timeout_s=body.timeout_s,
            context_kind=context_kind,
            admitted=True,  # validated by the route before it answered 202
        )
    except PlannerError as exc:
        registry.fail(
            user,
            run_id,
            type(exc).__name__,
            exc.message[:_ERROR_TEXT_LIMIT],
            input_error=isinstance(exc, InvalidContext),
        )
    except asyncio.CancelledError:
        registry.fail(user, run_id, "RunCancelled", "the run was cancelled (server shutdown)")
        raise
    except Exception as exc:  # a run's defect must reach its record, not vanish in a task
        _log.error("run failed unexpectedly", run_id=run_id, error=repr(exc)[:_ERROR_TEXT_LIMIT])
        registry.fail(user, run_id, "InternalError", "the run failed; see the server's logs")
    else:
        registry.complete(user, run_id, plan.model_dump(mode="json"))
    finally:
        state.engines.cleanup(engine)


@router.post(
    "/plans",
    status_code=202,
    summary="Start a plan run",
    responses=errors(*GUARDED, *WITH_BODY, 403, 429),
)
async def start_plan(
    body: PlanRequest,
    user: Operator,
    state: Annotated[ServiceState, Depends(service)],
    request: Request,
) -> Any:
    """Start planning in the background; poll `GET /plans/{run_id}` or stream `/ws/events`."""
    try:  # validators may take milliseconds on a large context: off the event loop
        context_kind = await run_in_threadpool(
            state.engines.admit_context,
            body.objective,
            body.context,
            planner=body.planner,
            bucket=body.bucket,
            context_kind=body.context_kind,
        )
    except InvalidContext as exc:  # the caller's error (422 naming the field): nothing starts
        _log.info("context refused", user=user.name, field=exc.field, kind=exc.kind)
        raise
    registry = runs_of(state)
    request_id = getattr(request.state, "request_id", None)
    context = UserExecutionContext.create(user.name, request_id=request_id)
    engine = state.engines.create_for_user(context)  # RunLimitExceeded -> 429
    try:
        registry.start(
            context.user_id,
            context.run_id,
            body.objective,
            planner=body.planner,
            bucket=body.bucket,
        )
        task = asyncio.get_running_loop().create_task(
            _run_in_background(state, registry, engine, body, context_kind),
            name=f"plan-{context.run_id}",
        )
    except BaseException:
        state.engines.cleanup(engine)
        raise
    registry.keep(task)
    _log.info("run started", run_id=context.run_id, request_id=context.request_id, user=user.name)
    return {"run_id": context.run_id, "status": "running"}


@router.get("/plans", summary="The caller's runs, newest first", responses=errors(*GUARDED))
async def list_plans(
    user: Viewer,
    state: Annotated[ServiceState, Depends(service)],
) -> dict[str, list[dict[str, Any]]]:
    """Runs without their plans (read one run for its plan)."""
    records = runs_of(state).list(user.name)
    return {"runs": [record.to_dict(with_plan=False) for record in records]}


@router.get("/plans/{run_id}", summary="One of the caller's runs", responses=errors(*GUARDED, 404))
async def get_plan(
    run_id: str,
    user: Viewer,
    state: Annotated[ServiceState, Depends(service)],
) -> Any:
    """The run's status and, once completed, its plan (or, once failed, its error)."""
    record = runs_of(state).get(user.name, run_id)
    if record is None:
        return _not_found(run_id)
    return record.to_dict()
