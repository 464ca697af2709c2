"""What the runs table hands out (`StoredRun`), its statuses, and how payloads are stored.

A context is kept as zlib of its canonical JSON (sorted keys, no spaces, UTF-8), and its
digest is the sha256 of that JSON, so equal contexts have equal digests in every process.
Plans and errors are JSON text. Timestamps are aware UTC datetimes in Python and ISO 8601
strings in `to_dict()`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, Literal

from planforge.configstore.errors import InvalidInput
from planforge.documents import canonical_json as _canonical_text

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINISHED_STATUSES",
    "INTERRUPTED",
    "QUEUED",
    "RUNNING",
    "RUN_STATUSES",
    "RunStatus",
    "StoredRun",
    "canonical_json",
    "decode_context",
    "encode_context",
    "json_text",
    "parse_json_text",
]

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
QUEUED: Final = "queued"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
INTERRUPTED: Final = "interrupted"
RUN_STATUSES: Final = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, INTERRUPTED)
#: A run in one of these has ended for good: it never changes again and may be pruned.
FINISHED_STATUSES: Final = (COMPLETED, FAILED, CANCELLED, INTERRUPTED)


def canonical_json(value: Any, field: str) -> str:
    """`documents.canonical_json`, with a value that is not JSON data refused as `field`."""
    try:
        return _canonical_text(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, type(value).__name__, f"must be JSON data ({exc})") from None


def json_text(value: object, field: str) -> str:
    """A plan or an error as the JSON text the table keeps; it must be a JSON object."""
    if not isinstance(value, dict):
        raise InvalidInput(field, type(value).__name__, "must be a dict (a JSON object)")
    return canonical_json(value, field)


def parse_json_text(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def encode_context(context: object) -> tuple[bytes, str]:
    """(zlib of the canonical JSON, sha256 hex of that JSON) of a context dict."""
    if not isinstance(context, dict):
        raise InvalidInput("context", type(context).__name__, "must be a dict (a JSON object)")
    body = canonical_json(context, "context").encode("utf-8")
    return zlib.compress(body, 6), hashlib.sha256(body).hexdigest()


def decode_context(blob: bytes) -> dict[str, Any]:
    return dict(json.loads(zlib.decompress(blob).decode("utf-8")))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class StoredRun:
    """One run as the table held it when read; frozen, detached from any session.

    `plan` is None until the run completes, and also in the runs `RunStore.list` returns
    (it leaves the payloads unread); `context` is None unless asked for with
    `RunStore.get(..., with_context=True)`. `context_bytes` is its compressed size.
    """

    run_id: str
    user: str
    request_id: str | None
    objective: str
    planner: str | None
    planner_version: str | None
    bucket: str | None
    config_id: int | None
    config_version: int | None
    config_digest: str | None
    context_kind: str | None
    context_digest: str
    context_bytes: int
    timeout_s: float | None
    status: RunStatus
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    worker: str | None
    error: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    context: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good (completed, failed, cancelled, interrupted)."""
        return self.status in FINISHED_STATUSES

    @property
    def duration_s(self) -> float | None:
        """Seconds from its (last) start to its end; None while it has not both."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self, *, with_plan: bool = True, with_context: bool = False) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings in UTC, plus `duration_s`."""
        data: dict[str, Any] = {}
        for item in fields(self):
            if item.name in ("plan", "context"):
                continue
            value = getattr(self, item.name)
            data[item.name] = _iso(value) if isinstance(value, datetime) else value
        data["duration_s"] = self.duration_s
        if with_plan:
            data["plan"] = self.plan
        if with_context:
            data["context"] = self.context
        return data
