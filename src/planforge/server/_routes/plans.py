"""Routes: plans. Operators start runs in the background; each user reads only their own.

`POST /plans` first admits the context (its kind decided and the context validated, off the
event loop): a context its planner cannot read is the caller's error, answered 422 naming the
field, with nothing started. Then it answers 202 with the run id as soon as the run's engine
exists (so the per-user run limit answers 429 right away) and the run is recorded in the
database; it goes on in a worker and its outcome lands in its record, which every replica
reads. The run id is the execution context's, the one every event of the run carries, so a
client can match `GET /ws/events` traffic to its runs. `DELETE /plans/{id}` cancels.

With `explain: true` the run asks its planner why: the request is stored with the context key
`planner_explain` (`contract.EXPLAIN_CONTEXT_KEY`), so a replica that takes the run up asks
too; the runtime hands it to the planner as `Run.explain`, and a planner that can explain
puts `explanation` in the plan the run's record carries. A planner that cannot plans as usual.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from planforge.contract import EXPLAIN_CONTEXT_KEY
from planforge.errors import InvalidContext, shown_value
from planforge.logs import get_logger
from planforge.server._auth import Operator, Viewer, service
from planforge.server._bodies import CheckedJSONRoute
from planforge.server._responses import GUARDED, WITH_BODY, errors
from planforge.server._runs import RunService
from planforge.server._state import ServiceState
from planforge.server.errors import PermissionDenied

__all__ = ["PlanRequest", "router", "runs_of"]

router = APIRouter(tags=["plans"], route_class=CheckedJSONRoute)
_log = get_logger("server.plans")
RunStatusName = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]


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
    explain: bool = Field(
        default=False,
        description="Ask the planner why this plan; one that can explain puts `explanation` "
        "in the plan (the holistic planner: each calculator's candidates, what every stage "
        "kept and dropped, and for an empty plan the closest plan a rule stopped).",
    )


def runs_of(state: ServiceState) -> RunService:
    """The service's runs (made in the lifespan)."""
    service: RunService = state.runs
    return service


def _not_found(run_id: str) -> JSONResponse:
    return JSONResponse(
        status_code=404,
        content={
            "error": "RunNotFound",
            "message": f"No run {shown_value(run_id)} among your runs; list them with GET /plans.",
        },
    )


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
    """Record the run and start it; poll `GET /plans/{run_id}` or stream `/ws/events`.

    Any replica answers for the run afterwards: it is kept in the database."""
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
    fields = body.model_dump()
    fields["context_kind"] = context_kind
    if body.explain:  # kept with the run, so a replica that takes it up explains it too
        fields["context"] = {**body.context, EXPLAIN_CONTEXT_KEY: True}
    request_id = getattr(request.state, "request_id", None)
    started = await runs_of(state).submit(user.name, fields, request_id=request_id)
    _log.info("run started", run_id=started["run_id"], request_id=request_id, user=user.name)
    return started


@router.get("/plans", summary="The caller's runs, newest first", responses=errors(*GUARDED, 403))
async def list_plans(
    user: Viewer,
    state: Annotated[ServiceState, Depends(service)],
    bucket: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[RunStatusName | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; runs created since")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    of: Annotated[
        str | None, Query(max_length=128, description="Admins: another user's runs.")
    ] = None,
) -> dict[str, list[dict[str, Any]]]:
    """Runs without their plans (read one run for its plan); filter by bucket, status, since.
    An admin may list another user's runs with `of`."""
    if of is not None and of != user.name and user.role != "admin":
        raise PermissionDenied(user, "admin")
    records = await run_in_threadpool(
        state.store.runs.list,
        user=of or user.name,
        bucket=bucket,
        status=status,
        since=since,
        limit=limit,
    )
    return {"runs": [record.to_dict(with_plan=False) for record in records]}


@router.get("/plans/{run_id}", summary="One of the caller's runs", responses=errors(*GUARDED, 404))
async def get_plan(
    run_id: Annotated[str, Path(max_length=128)],
    user: Viewer,
    state: Annotated[ServiceState, Depends(service)],
    context: Annotated[bool, Query(description="Include what the planner saw.")] = False,
) -> Any:
    """The run's status and, once completed, its plan (or, once failed, its error), with the
    planner and the bucket's configuration version it used; with `context=true`, the
    context the planner saw, as stored."""
    if context:
        record = await run_in_threadpool(
            state.store.runs.get, run_id, user=user.name, with_context=True
        )
    else:
        record = await runs_of(state).get(run_id, user.name)
    if record is None:
        return _not_found(run_id)
    return record.to_dict(with_context=context)


@router.delete(
    "/plans/{run_id}",
    summary="Cancel a run",
    responses=errors(*GUARDED, 403, 404, 409),
)
async def cancel_plan(
    run_id: Annotated[str, Path(max_length=128)],
    user: Operator,
    state: Annotated[ServiceState, Depends(service)],
) -> Any:
    """Cancel a run of yours (an admin: anyone's). A queued run never starts; a running one
    is stopped, on whichever replica runs it, and its events end with the cancellation."""
    record = await runs_of(state).cancel(run_id, user.name, admin=user.role == "admin")
    return record.to_dict(with_plan=False)
