"""Planners (viewer): list, describe, select with the explanation, factory diagnostics.

Handlers are plain functions: FastAPI runs them in its thread pool, since the factory's
calls may block (discovery, sandboxed imports).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from planforge.server._auth import Admin, Viewer, service
from planforge.server._bodies import CheckedJSONRoute
from planforge.server._responses import GUARDED, WITH_BODY, errors
from planforge.server._state import ServiceState

__all__ = ["SelectRequest", "router"]

router = APIRouter(tags=["planners"], route_class=CheckedJSONRoute)

State = Annotated[ServiceState, Depends(service)]


class SelectRequest(BaseModel):
    """What `POST /planners/select` ranks planners for."""

    # strict: `true` is not a number and `0` is not a boolean
    model_config = ConfigDict(extra="forbid", strict=True)

    objective: str = Field(min_length=1, max_length=10_000)
    capabilities: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    prefer_production: bool = True
    strict: bool = False
    context_kind: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Leave out planners that read another kind of context (for example "
        "portfolio); 'any' keeps only planners that read any mapping.",
    )


@router.get(
    "/planners",
    summary="Discovered planners with their metadata and status.",
    responses=errors(*GUARDED, 422),
)
def list_planners(
    _: Viewer,
    state: State,
    include_inactive: Annotated[
        bool, Query(description="Also list quarantined, failed and disabled planners.")
    ] = False,
) -> list[dict[str, Any]]:
    names = state.factory.list_planners(include_inactive=include_inactive)
    return [state.factory.describe_planner(name) for name in names]


@router.get(
    "/planners/quarantined",
    summary="Planners in quarantine, each with its reason (as every process sees them).",
    responses=errors(*GUARDED),
)
def quarantined(_: Viewer, state: State) -> list[dict[str, Any]]:
    return state.factory.list_quarantined()


@router.post(
    "/planners/{name}/release",
    summary="Lift a planner's quarantine; it is checked in the sandbox again on next use.",
    responses=errors(*GUARDED, 403),
)
def release(name: str, _: Admin, state: State) -> dict[str, Any]:
    return {"planner": name, "released": state.factory.release_quarantine(name)}


@router.get(
    "/planners/{name}",
    summary="One planner's metadata, status, breaker and stats.",
    responses=errors(*GUARDED, 404),
)
def describe_planner(name: str, _: Viewer, state: State) -> dict[str, Any]:
    return state.factory.describe_planner(name)


@router.post(
    "/planners/select",
    summary="The best planner for an objective, with every candidate's score and exclusion.",
    responses=errors(*GUARDED, *WITH_BODY),
)
def select_planner(body: SelectRequest, _: Viewer, state: State) -> dict[str, Any]:
    selection = state.factory.explain_selection(
        body.objective,
        body.capabilities,
        prefer_production=body.prefer_production,
        strict=body.strict,
        context_kind=body.context_kind,
    )
    return selection.to_dict()


@router.get(
    "/diagnostics",
    summary="The factory's diagnostics (discovery, quarantine, stats).",
    responses=errors(*GUARDED),
)
def diagnostics(_: Viewer, state: State) -> dict[str, Any]:
    return state.factory.diagnostics_json()
