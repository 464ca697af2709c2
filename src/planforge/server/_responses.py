"""Error answers: one JSON body for every 4xx and 5xx, its HTTP status, and the OpenAPI
entries that document both, so a client (and schemathesis) can trust the schema.

Every error leaves as `ErrorBody`: `error` (the error's name), `message` (what happened and
what to do), and, when they apply, `field` (the input at fault), `kind` (the context kind) and
`problems` (each validation problem with its location). Routes list the statuses they can
answer with `errors(...)`; the statuses every guarded route shares are added for them.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from planforge.errors import InvalidContext, PlannerError
from planforge.redact import redact_text

__all__ = [
    "GUARDED",
    "WITH_BODY",
    "ErrorBody",
    "Problem",
    "error_content",
    "error_name",
    "errors",
    "status_for",
]


class Problem(BaseModel):
    """One validation problem: where (`loc`, as FastAPI reports it) and what."""

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int]
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(description="The error's name, e.g. ConfigNotFound.")
    message: str = Field(description="What happened and what to do about it.")
    field: str | None = Field(default=None, description="The input at fault, when one is.")
    kind: str | None = Field(default=None, description="The context kind, for context errors.")
    line: int | None = Field(
        default=None, description="The line of the document at fault (configurations)."
    )
    problems: list[Problem] | None = Field(
        default=None, description="Each validation problem (422 for a malformed request)."
    )


_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "A request the service cannot act on: a bad document, value or reference.",
    401: "No API token, or one that is unknown, revoked or rotated away.",
    403: "The caller's role is below what this route needs.",
    404: "The thing named does not exist (or belongs to another user).",
    409: "A conflict with the current state (a stale version, a name that exists).",
    413: "The request body is over the size limit.",
    422: "A malformed request, or a value (a context field, a number) that is not valid.",
    429: "The caller already has as many runs going as allowed.",
    503: "A dependency is unavailable (the database, an open circuit breaker).",
    504: "The work did not finish within its timeout.",
}

#: What every route behind a token can answer: no or a bad token, the database down.
GUARDED: Final = (401, 503)
#: What every route with a JSON body can answer: a bad document, too big, malformed.
WITH_BODY: Final = (400, 413, 422)

_BY_NAME: Final[dict[str, int]] = {
    **dict.fromkeys(
        (
            "PlannerNotFound",
            "ConfigNotFound",
            "BucketNotFound",
            "PresetNotFound",
            "UserNotFound",
            "RunNotFound",
        ),
        404,
    ),
    **dict.fromkeys(
        ("VersionConflict", "PresetExists", "EngineBusy", "UserExists", "RunFinished"), 409
    ),
    **dict.fromkeys(("RunLimitExceeded", "UserCapacityExceeded"), 429),
    **dict.fromkeys(
        ("CircuitOpenError", "NoActivePlannersError", "PlannerQuarantined", "StoreError"), 503
    ),
    "RunTimeout": 504,
    "RunStopped": 504,
    "DocumentTooLarge": 413,
    "RunContextTooLarge": 413,
    "AuthenticationError": 401,
    "PermissionDenied": 403,
    **dict.fromkeys(("NonFiniteNumber", "InvalidContext", "ContextError"), 422),
}


def error_name(error: PlannerError) -> str:
    """The error's class name; for an error rebuilt from a worker's answer, the class the
    worker raised (kept in its context), so the caller sees the same name and status."""
    return str(error.context.get("error_type") or type(error).__name__)


def status_for(error: PlannerError) -> int:
    """The HTTP status of an error, by its class name (which keeps this module free of every
    layer's imports); any context error is a 422, and the rest are 400."""
    status = _BY_NAME.get(error_name(error))
    if status is not None:
        return status
    return 422 if isinstance(error, InvalidContext) else 400


def error_content(error: PlannerError) -> dict[str, Any]:
    """The `ErrorBody` of an error (redacted: a message never carries a credential)."""
    body: dict[str, Any] = {"error": error_name(error), "message": redact_text(error.message)}
    for key in ("field", "kind"):
        value = getattr(error, key, None)
        if isinstance(value, str):
            body[key] = value
    dotted = getattr(error, "key", None)  # a configuration's dotted key at fault
    if isinstance(dotted, str) and "field" not in body:
        body["field"] = dotted
    line = getattr(error, "line", None)
    if isinstance(line, int) and not isinstance(line, bool):
        body["line"] = line
    return body


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the `ErrorBody` schema."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        for status in sorted(set(statuses))
    }
