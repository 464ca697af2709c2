"""Who a run belongs to: an immutable per-user execution context with unique, sortable ids.

The original runtime built engine keys from user, run and a millisecond timestamp, and two
creations in the same millisecond collided. Run ids here are a 48-bit millisecond time, a
16-bit per-process counter and 64 random bits: within a process they strictly increase (the
counter, carried into the next millisecond if it overflows, orders creations inside one
millisecond), and across processes the random part keeps them apart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from planforge.ids import ID_PATTERN, MAX_ID_LENGTH, id_problem
from planforge.runtime.errors import InvalidContextError

__all__ = [
    "ID_PATTERN",
    "MAX_CONTEXT_DEPTH",
    "MAX_ID_LENGTH",
    "UserExecutionContext",
    "check_id",
    "new_run_id",
    "run_id_time",
]

MAX_CONTEXT_DEPTH = 64
RUN_ID_LENGTH = 32

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def check_id(field_name: str, value: object) -> str:
    """Return `value` if it is a well-formed id (`planforge.ids`), else raise naming it."""
    problem = id_problem(value)
    if problem is None and isinstance(value, str):
        return value
    raise InvalidContextError(field_name, value, problem or "must be a string")


class _RunIdClock:
    """Hands out strictly increasing (millisecond, counter) pairs for this process."""

    __slots__ = ("_counter", "_last_ms", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> tuple[int, int]:
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._counter = 0
            elif self._counter < 0xFFFF:
                # same millisecond, or the wall clock stepped back: keep counting
                self._counter += 1
            else:
                self._last_ms += 1
                self._counter = 0
            return self._last_ms, self._counter

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


_CLOCK = _RunIdClock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CLOCK.reset_after_fork)


def new_run_id() -> str:
    """A 32-character lowercase hex id: time (ms), per-process counter, 64 random bits."""
    ms, counter = _CLOCK.next()
    return f"{ms & 0xFFFFFFFFFFFF:012x}{counter:04x}{os.urandom(8).hex()}"


def run_id_time(run_id: str) -> float:
    """The creation time (seconds since the epoch) encoded in a `new_run_id()` id."""
    if len(run_id) != RUN_ID_LENGTH:
        raise InvalidContextError("run_id", run_id, "is not an id made by new_run_id()")
    try:
        return int(run_id[:12], 16) / 1000.0
    except ValueError:
        raise InvalidContextError("run_id", run_id, "is not an id made by new_run_id()") from None


def _freeze_metadata(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if metadata is None or metadata is _EMPTY:
        return _EMPTY
    if not isinstance(metadata, Mapping):
        raise InvalidContextError(
            "metadata", metadata, f"must be a mapping, not {type(metadata).__name__}"
        )
    for key in metadata:
        if not isinstance(key, str):
            raise InvalidContextError("metadata", key, "has a key that is not a string")
    return MappingProxyType(dict(metadata))


@dataclass(frozen=True, slots=True)
class UserExecutionContext:
    """Everything that says whose run this is; immutable so it can be shared across threads.

    Build one with `create()` (which generates the ids) and nested ones with `child()`.
    Equality compares every field; the hash is the run id, which is unique.
    """

    user_id: str
    thread_id: str
    run_id: str
    request_id: str
    created_at: float = field(default_factory=time.time)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    parent: UserExecutionContext | None = None
    depth: int = 0

    def __post_init__(self) -> None:
        check_id("user_id", self.user_id)
        check_id("thread_id", self.thread_id)
        check_id("run_id", self.run_id)
        check_id("request_id", self.request_id)
        # always copied, so a caller's dict (or a proxy over it) cannot change us later
        object.__setattr__(self, "metadata", _freeze_metadata(self.metadata))
        if isinstance(self.created_at, bool) or not isinstance(self.created_at, int | float):
            raise InvalidContextError("created_at", self.created_at, "must be a number")
        if self.parent is not None and not isinstance(self.parent, UserExecutionContext):
            raise InvalidContextError(
                "parent", self.parent, "must be a UserExecutionContext or None"
            )
        expected = 0 if self.parent is None else self.parent.depth + 1
        if self.parent is not None and self.parent.user_id != self.user_id:
            raise InvalidContextError(
                "parent", self.parent.user_id, "belongs to another user; a child keeps its user"
            )
        if self.depth != expected:
            raise InvalidContextError(
                "depth", self.depth, f"must be {expected} (its parent's depth + 1, or 0 for a root)"
            )
        if self.depth > MAX_CONTEXT_DEPTH:
            raise InvalidContextError(
                "depth", self.depth, f"exceeds the nesting limit of {MAX_CONTEXT_DEPTH}"
            )

    def __hash__(self) -> int:
        return hash(self.run_id)

    @classmethod
    def create(
        cls,
        user_id: str,
        *,
        thread_id: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> UserExecutionContext:
        """A root context for `user_id`; missing run, thread and request ids are generated
        (a run id is given when a stored run is taken up again, by this or another replica)."""
        run_id = new_run_id() if run_id is None else run_id
        return cls(
            user_id=user_id,
            thread_id=run_id if thread_id is None else thread_id,
            run_id=run_id,
            request_id=new_run_id() if request_id is None else request_id,
            metadata=_EMPTY if metadata is None else metadata,
        )

    def child(self, **overrides: Any) -> UserExecutionContext:
        """A nested context: new run id, this context as parent, depth + 1, same user.

        `thread_id`, `request_id` and `metadata` may be overridden (metadata replaces, it is
        not merged); anything else is refused.
        """
        allowed = {"thread_id", "request_id", "metadata"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise InvalidContextError(
                unknown[0], overrides[unknown[0]], "cannot be overridden in a child context"
            )
        return UserExecutionContext(
            user_id=self.user_id,
            thread_id=overrides.get("thread_id", self.thread_id),
            run_id=new_run_id(),
            request_id=overrides.get("request_id", self.request_id),
            metadata=overrides.get("metadata", self.metadata),
            parent=self,
            depth=self.depth + 1,
        )

    @property
    def root(self) -> UserExecutionContext:
        """The outermost context of this chain."""
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view; the parent appears as its run id."""
        return {
            "user_id": self.user_id,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "request_id": self.request_id,
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
            "parent_run_id": None if self.parent is None else self.parent.run_id,
            "depth": self.depth,
        }
