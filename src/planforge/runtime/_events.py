"""The events a run streams to its user: who, which run, in what order, what happened.

Each event carries two orders: `sequence` counts the events of one run (from 1, set by the
run's emitter) and `user_sequence` counts the events of one user (set by the bus when it
publishes; 0 until then). A client that reconnects says the last `user_sequence` it saw and
gets what it missed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from planforge.runtime._context import ID_PATTERN
from planforge.runtime.errors import InvalidEventError

__all__ = [
    "AGENT_COMPLETED",
    "AGENT_ERROR",
    "AGENT_STARTED",
    "AGENT_THINKING",
    "EVENT_TYPES",
    "TOOL_COMPLETED",
    "TOOL_EXECUTING",
    "RuntimeEvent",
]

AGENT_STARTED = "agent_started"
AGENT_THINKING = "agent_thinking"
TOOL_EXECUTING = "tool_executing"
TOOL_COMPLETED = "tool_completed"
AGENT_COMPLETED = "agent_completed"
AGENT_ERROR = "agent_error"
EVENT_TYPES = (
    AGENT_STARTED,
    AGENT_THINKING,
    TOOL_EXECUTING,
    TOOL_COMPLETED,
    AGENT_COMPLETED,
    AGENT_ERROR,
)
MAX_TYPE_LENGTH = 64

_new = object.__new__
_set = object.__setattr__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_fallback(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(str(item) for item in value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class RuntimeEvent:
    """One thing that happened in a user's run; `payload` must be JSON-able.

    Anything in the payload that JSON cannot hold is sent as its `str()` by `to_json()`.
    """

    user_id: str
    run_id: str
    sequence: int
    type: str
    ts: float
    payload: dict[str, Any] = field(default_factory=dict)
    user_sequence: int = 0

    def __post_init__(self) -> None:
        for name in ("user_id", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
                raise InvalidEventError(
                    name, value, "must be 1-128 letters, digits or _ . : @ - characters"
                )
        if not _is_int(self.sequence) or self.sequence < 1:
            raise InvalidEventError("sequence", self.sequence, "must be an integer >= 1")
        if not isinstance(self.type, str) or not 0 < len(self.type) <= MAX_TYPE_LENGTH:
            raise InvalidEventError(
                "type", self.type, f"must be a non-empty string of at most {MAX_TYPE_LENGTH}"
            )
        if (
            isinstance(self.ts, bool)
            or not isinstance(self.ts, int | float)
            or not math.isfinite(self.ts)
        ):
            raise InvalidEventError("ts", self.ts, "must be a finite number (seconds)")
        if not isinstance(self.payload, dict):
            raise InvalidEventError("payload", self.payload, "must be a dict")
        if not _is_int(self.user_sequence) or self.user_sequence < 0:
            raise InvalidEventError("user_sequence", self.user_sequence, "must be an integer >= 0")

    def with_user_sequence(self, user_sequence: int) -> RuntimeEvent:
        """A copy stamped with the bus's per-user sequence (no re-validation: hot path)."""
        event: RuntimeEvent = _new(RuntimeEvent)
        _set(event, "user_id", self.user_id)
        _set(event, "run_id", self.run_id)
        _set(event, "sequence", self.sequence)
        _set(event, "type", self.type)
        _set(event, "ts", self.ts)
        _set(event, "payload", self.payload)
        _set(event, "user_sequence", user_sequence)
        return event

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "user_sequence": self.user_sequence,
            "type": self.type,
            "ts": self.ts,
            "payload": self.payload,
        }

    def to_json(self) -> str:
        """Compact JSON; `from_json(to_json(e)) == e` for a JSON-able payload."""
        return json.dumps(self.to_dict(), separators=(",", ":"), default=_json_fallback)

    @classmethod
    def from_dict(cls, data: object) -> RuntimeEvent:
        """Rebuild an event from `to_dict()` output; raises `InvalidEventError` on bad input."""
        if not isinstance(data, dict):
            raise InvalidEventError("event", data, "must be a JSON object")
        for name in ("user_id", "run_id", "sequence", "type", "ts"):
            if name not in data:
                raise InvalidEventError(name, None, "is missing")
        try:
            return cls(
                user_id=data["user_id"],
                run_id=data["run_id"],
                sequence=data["sequence"],
                type=data["type"],
                ts=data["ts"],
                payload=data.get("payload", {}),
                user_sequence=data.get("user_sequence", 0),
            )
        except TypeError as exc:  # pragma: no cover - every field is checked above
            raise InvalidEventError("event", data, str(exc)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> RuntimeEvent:
        """Parse `to_json()` output; raises `InvalidEventError` on anything malformed."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InvalidEventError("json", text, f"is not valid JSON ({exc})") from None
        return cls.from_dict(data)
