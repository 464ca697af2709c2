"""Configurations, buckets and presets (viewers read, admins write), dry runs, A/B
comparisons and a bucket planner's health.

Every handler delegates to the store, `configstore.transfer`, `configstore.diff` and the
holistic portfolio planner; none re-implements their checks. Handlers are plain functions so
FastAPI runs them (database and planning work) in its thread pool.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from planforge.configstore import (
    BUCKET_PLANNER,
    MAX_DOCUMENT_BYTES,
    ConfigVersion,
    CreateResult,
    clone_config,
    config_label,
    export_config,
    import_config,
    parse_validated,
    semantic_diff,
    unified_diff,
)
from planforge.configstore.errors import DocumentTooLarge
from planforge.contract import CONFIG_CONTEXT_KEY
from planforge.holistic.errors import ConfigError
from planforge.portfolio import compare_configs, dry_run_config
from planforge.portfolio.planner import PRESETS, preset_text
from planforge.server._admission import run_admitted
from planforge.server._auth import Admin, Operator, Viewer, service
from planforge.server._bodies import CheckedJSONRoute
from planforge.server._responses import GUARDED, WITH_BODY, errors
from planforge.server._state import ServiceState
from planforge.server._tasks import run_task

__all__ = ["router"]

router = APIRouter(tags=["configurations"], route_class=CheckedJSONRoute)

State = Annotated[ServiceState, Depends(service)]
Text = Annotated[str, Field(max_length=MAX_DOCUMENT_BYTES)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str | None, Field(default=None, max_length=10_000)]


class _Body(BaseModel):
    # strict: `true` is not a number and `0` is not a boolean
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateConfig(_Body):
    name: Name
    title: Annotated[str, Field(min_length=1, max_length=500)]
    toml: Text
    description: Reason = None
    expected_version: Annotated[int | None, Field(default=None, ge=0)] = None


class CloneConfig(_Body):
    name: Name
    title: Annotated[str, Field(min_length=1, max_length=500)]


class AssignBucket(_Body):
    config_id: int
    reason: Reason = None


class RollbackBucket(_Body):
    name: Name
    version: Annotated[int, Field(ge=1)]
    reason: Reason = None


class CreatePreset(_Body):
    name: Name
    description: Annotated[str, Field(max_length=10_000)] = ""
    toml: Text
    tags: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=32)] = []


class RatePreset(_Body):
    rating: Annotated[int, Field(ge=1, le=5)]


class DryRun(_Body):
    toml: Text


class ABTest(_Body):
    config_a: Annotated[
        str,
        Field(
            max_length=MAX_DOCUMENT_BYTES,
            description="A stored configuration id, a preset name or TOML text.",
        ),
    ]
    config_b: Annotated[str, Field(max_length=MAX_DOCUMENT_BYTES)]
    context: dict[str, Any]
    objective: Annotated[str, Field(min_length=1, max_length=10_000)] = "Rebalance my portfolio"
    timeout_s: Annotated[float | None, Field(default=None, gt=0.0, le=3600.0)] = None


def _record(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(record)
    return data


def _created(result: CreateResult) -> dict[str, Any]:
    return {"created": result.created, "config": _record(result.config)}


def _resolve(state: ServiceState, reference: str, side: str) -> str:
    """A stored id, a preset name or TOML text (never a path: this is a remote request), as
    checked TOML text: a bad one is refused here, before any work is sent to a worker."""
    text = reference.strip()
    if text.isdigit():
        text = state.store.get_config_by_id(int(text)).toml
    elif text in PRESETS:
        text = preset_text(text)
    else:
        text = reference
    parse_validated(text, source=side)
    return text


# -- configurations ---------------------------------------------------------------------------


@router.post(
    "/configs",
    status_code=201,
    summary="Store the next version of a configuration.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 409),
)
def create_config(body: CreateConfig, user: Admin, state: State) -> dict[str, Any]:
    return _created(
        state.store.create_new_version(
            body.name,
            body.title,
            body.toml,
            description=body.description,
            created_by=user.name,
            expected_version=body.expected_version,
        )
    )


@router.post(
    "/configs/dry-run",
    summary="Load what a configuration enables; plan nothing.",
    responses=errors(*GUARDED, *WITH_BODY),
)
def dry_run(body: DryRun, user: Viewer, state: State) -> dict[str, Any]:
    parse_validated(body.toml, source="dry-run")  # a bad one is the caller's error, here
    report: dict[str, Any] = run_task(state, user.name, dry_run_config, body.toml)
    return report


@router.post(
    "/configs/import",
    status_code=201,
    summary="Import an uploaded file.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 409),
)
def import_file(
    user: Admin,
    state: State,
    file: Annotated[UploadFile, File(description="An exported file or plain TOML.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    title: Annotated[str | None, Form(max_length=500)] = None,
) -> dict[str, Any]:
    raw = file.file.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(len(raw), MAX_DOCUMENT_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the uploaded file is not UTF-8 text (byte {exc.start}); save it as UTF-8",
            source=file.filename or "upload",
        ) from exc
    return _created(import_config(state.store, text, name=name, title=title, created_by=user.name))


@router.get(
    "/configs",
    summary="Every configuration's active version, by name (without its text).",
    responses=errors(*GUARDED),
)
def list_configs(_: Viewer, state: State) -> list[dict[str, Any]]:
    listed = [_record(version) for version in state.store.list_configs()]
    for record in listed:
        record.pop("toml", None)
    return listed


class ProposedConfig(_Body):
    toml: Text


@router.post(
    "/configs/{config_id}/diff",
    summary="What saving this text over a stored version would change, before saving.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404),
)
def diff_proposed(
    config_id: int, body: ProposedConfig, _: Operator, state: State
) -> dict[str, Any]:
    """The semantic diff (modules enabled and disabled, params and planner settings changed,
    old and new values) and the text diff; an invalid text is refused naming the key."""
    base: ConfigVersion = state.store.get_config_by_id(config_id)
    labels = {"a": config_label(base), "b": "proposed"}
    return {
        **labels,
        "semantic": semantic_diff(base, body.toml, b_label="proposed").to_dict(),
        "unified": unified_diff(base, body.toml, b_label="proposed"),
    }


@router.get(
    "/configs/{name}/history",
    summary="Every version of a name, oldest first.",
    responses=errors(*GUARDED),
)
def config_history(name: str, _: Viewer, state: State) -> list[dict[str, Any]]:
    return [_record(version) for version in state.store.get_version_history(name)]


@router.get(
    "/configs/{config_id}",
    summary="One stored configuration version.",
    responses=errors(*GUARDED, 404, 422),
)
def show_config(config_id: int, _: Viewer, state: State) -> dict[str, Any]:
    return _record(state.store.get_config_by_id(config_id))


@router.get(
    "/configs/{a}/diff/{b}",
    summary="Unified or semantic diff of two versions.",
    responses=errors(*GUARDED, 400, 404, 422),
)
def diff_configs(
    a: int,
    b: int,
    _: Viewer,
    state: State,
    semantic: Annotated[bool, Query(description="What changes in behaviour.")] = False,
) -> dict[str, Any]:
    left: ConfigVersion = state.store.get_config_by_id(a)
    right: ConfigVersion = state.store.get_config_by_id(b)
    labels = {"a": config_label(left), "b": config_label(right)}
    if semantic:
        return {**labels, "semantic": semantic_diff(left, right).to_dict()}
    return {**labels, "unified": unified_diff(left, right)}


@router.get(
    "/configs/{config_id}/export",
    summary="A version as a file with its header, for `import`.",
    response_class=Response,  # its own media type: errors stay documented as JSON
    responses={
        200: {
            "content": {"application/toml": {"schema": {"type": "string"}}},
            "description": "The file: TOML with a metadata header.",
        },
        **errors(*GUARDED, 404, 422),
    },
)
def export(config_id: int, _: Viewer, state: State) -> PlainTextResponse:
    version = state.store.get_config_by_id(config_id)
    filename = f"{version.name}-v{version.version}.toml".replace('"', "_")
    return PlainTextResponse(
        export_config(version),
        media_type="application/toml",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/configs/{config_id}/clone",
    status_code=201,
    summary="Copy under a new name.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404, 409),
)
def clone(config_id: int, body: CloneConfig, user: Admin, state: State) -> dict[str, Any]:
    return _created(
        clone_config(state.store, config_id, name=body.name, title=body.title, created_by=user.name)
    )


# -- buckets ----------------------------------------------------------------------------------


@router.post(
    "/buckets/{bucket}/assign",
    summary="Point a bucket at a configuration version.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404),
)
def assign(bucket: str, body: AssignBucket, user: Admin, state: State) -> dict[str, Any]:
    return _record(
        state.store.assign_config_to_bucket(
            bucket, body.config_id, assigned_by=user.name, reason=body.reason
        )
    )


@router.get(
    "/buckets",
    summary="Every bucket with the configuration version it runs now.",
    responses=errors(*GUARDED),
)
def list_buckets(_: Viewer, state: State) -> list[dict[str, Any]]:
    listed = []
    for bucket in state.store.list_buckets():
        config = _record(state.store.get_bucket_config(bucket))
        config.pop("toml", None)
        listed.append({"bucket": bucket, "config": config})
    return listed


@router.get(
    "/buckets/{bucket}/config",
    summary="The configuration a bucket runs now.",
    responses=errors(*GUARDED, 404),
)
def bucket_config(bucket: str, _: Viewer, state: State) -> dict[str, Any]:
    return _record(state.store.get_bucket_config(bucket))


@router.get(
    "/buckets/{bucket}/history",
    summary="Every assignment of a bucket, oldest first.",
    responses=errors(*GUARDED),
)
def bucket_history(bucket: str, _: Viewer, state: State) -> list[dict[str, Any]]:
    return [_record(entry) for entry in state.store.bucket_history(bucket)]


@router.post(
    "/buckets/{bucket}/rollback",
    summary="Point a bucket back at an older version.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404),
)
def rollback(bucket: str, body: RollbackBucket, user: Admin, state: State) -> dict[str, Any]:
    return _record(
        state.store.rollback_to_version(
            bucket, body.name, body.version, assigned_by=user.name, reason=body.reason
        )
    )


@router.get(
    "/planner/health/{bucket}",
    summary="A bucket's planner: modules loadable, configuration valid, dependency warnings.",
    responses=errors(*GUARDED, 404),
)
def bucket_health(bucket: str, user: Viewer, state: State) -> dict[str, Any]:
    version = state.store.get_bucket_config(bucket)
    health: dict[str, Any] = {"bucket": bucket, "config": config_label(version)}
    try:
        parse_validated(version.toml, source=config_label(version))
    except ConfigError as exc:
        return {**health, "healthy": False, "config_valid": False, "errors": [exc.message]}
    report = run_task(state, user.name, dry_run_config, version.toml)
    return {
        **health,
        "healthy": report["valid"] and not report["errors"],
        "config_valid": True,
        "modules_loadable": report["valid"],
        "modules_loaded": report["modules_loaded"],
        "warnings": report["warnings"],
        "errors": report["errors"],
    }


# -- presets ----------------------------------------------------------------------------------


def _preset(record: Any, *, with_toml: bool) -> dict[str, Any]:
    data = _record(record)
    if not with_toml:
        data.pop("toml", None)
    return data


def _preset_reference(value: str) -> int | str:
    return int(value) if value.isdigit() else value


@router.get(
    "/presets",
    summary="Shared presets (without their TOML), optionally by tag.",
    responses=errors(*GUARDED, 422),
)
def list_presets(
    _: Viewer, state: State, tag: Annotated[str | None, Query(max_length=100)] = None
) -> list[dict[str, Any]]:
    return [_preset(item, with_toml=False) for item in state.store.list_presets(tag=tag)]


@router.get(
    "/presets/{id_or_name}",
    summary="One preset with its TOML (counts a download).",
    responses=errors(*GUARDED, 404),
)
def get_preset(id_or_name: str, _: Viewer, state: State) -> dict[str, Any]:
    return _preset(state.store.get_preset(_preset_reference(id_or_name)), with_toml=True)


@router.post(
    "/presets",
    status_code=201,
    summary="Share a new preset.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 409),
)
def create_preset(body: CreatePreset, user: Admin, state: State) -> dict[str, Any]:
    preset = state.store.create_preset(
        body.name, body.description, body.toml, author=user.name, tags=body.tags
    )
    return _preset(preset, with_toml=True)


@router.post(
    "/presets/{id_or_name}/rate",
    summary="Add one 1..5 star vote.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404),
)
def rate_preset(id_or_name: str, body: RatePreset, _: Admin, state: State) -> dict[str, Any]:
    preset = state.store.rate_preset(_preset_reference(id_or_name), body.rating)
    return _preset(preset, with_toml=False)


# -- comparison -------------------------------------------------------------------------------


@router.post(
    "/abtest",
    summary="Plan one context with two configurations; say which wins.",
    responses=errors(*GUARDED, *WITH_BODY, 403, 404, 429, 504),
)
async def abtest(body: ABTest, user: Operator, state: State, request: Request) -> dict[str, Any]:
    """Two plans, so an operator's work: the same admission as `POST /plans` (the context
    validated, a slot in the caller's run limit, the run timeout)."""
    context = dict(body.context)
    context.pop(CONFIG_CONTEXT_KEY, None)  # the two configurations are the point here
    configs = await run_in_threadpool(
        lambda: (
            _resolve(state, body.config_a, "config_a"),
            _resolve(state, body.config_b, "config_b"),
        )
    )

    def in_a_worker() -> dict[str, Any]:
        """Where plans run (a worker, for the service), so no module is imported here."""
        report: dict[str, Any] = run_task(
            state,
            user.name,
            compare_configs,
            configs,
            objective=body.objective,
            context=context,
            timeout_s=body.timeout_s,
        )
        return report

    return await run_admitted(
        state,
        request,
        user,
        in_a_worker,
        objective=body.objective,
        context=context,
        planner=BUCKET_PLANNER,
        timeout_s=body.timeout_s,
    )
