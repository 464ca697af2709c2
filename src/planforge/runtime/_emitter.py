"""A run's voice: the six events a user sees while their plan is made.

One emitter per run (per `UserExecutionContext`). It numbers the run's events from 1, makes
payloads JSON-safe and bounded, and never lets a delivery failure reach the run: the
original runtime aborted runs when a websocket send raised; here a failure is counted
(`failed`) and logged, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from planforge.errors import InvalidContext
from planforge.logs import get_logger
from planforge.runtime._bus import EventBus
from planforge.runtime._context import UserExecutionContext
from planforge.runtime._events import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    AGENT_STARTED,
    AGENT_THINKING,
    TOOL_COMPLETED,
    TOOL_EXECUTING,
    RuntimeEvent,
)

__all__ = ["MAX_PAYLOAD_ITEMS", "MAX_PAYLOAD_STRING", "UserEventEmitter", "jsonable"]

MAX_PAYLOAD_ITEMS = 1000
MAX_PAYLOAD_STRING = 8192
MAX_PAYLOAD_DEPTH = 16

_log = get_logger("runtime.emitter")


def _clip(text: str) -> str:
    if len(text) <= MAX_PAYLOAD_STRING:
        return text
    return f"{text[:MAX_PAYLOAD_STRING]}...(+{len(text) - MAX_PAYLOAD_STRING} chars)"


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe, bounded copy of `value`, so buffered events stay small and serialisable.

    Mappings keep their order (keys become strings), sets are sorted, dataclasses and
    pydantic models become dicts, anything else its `str()`; long strings and containers
    are cut with a marker saying how much was left out.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_PAYLOAD_DEPTH:
        return _clip(repr(value))
    depth = _depth + 1
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == MAX_PAYLOAD_ITEMS:
                out["..."] = f"+{len(value) - MAX_PAYLOAD_ITEMS} more entries"
                break
            out[key if isinstance(key, str) else str(key)] = jsonable(item, depth)
        return out
    if isinstance(value, set | frozenset):
        items: list[Any] = sorted((jsonable(item, depth) for item in value), key=repr)
    elif isinstance(value, list | tuple):
        items = [jsonable(item, depth) for item in value[:MAX_PAYLOAD_ITEMS]]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return jsonable(fields, _depth)
    elif callable(getattr(value, "model_dump", None)):
        try:
            return jsonable(value.model_dump(mode="json"), _depth)
        except Exception:
            return _clip(str(value))
    else:
        return _clip(str(value))
    if len(value) > MAX_PAYLOAD_ITEMS:
        items = items[:MAX_PAYLOAD_ITEMS]
        items.append(f"...(+{len(value) - MAX_PAYLOAD_ITEMS} more items)")
    return items


class UserEventEmitter:
    """Publishes one run's events to its user's stream, numbered 1, 2, 3, ... per run.

    Thread-safe: events emitted from several threads get consecutive numbers and reach the
    bus in that order. Every method returns the event it published, or None if publishing
    failed (then `failed` is incremented and the failure logged; nothing is raised).
    """

    __slots__ = ("_bus", "_context", "_failed", "_lock", "_sent", "_sequence")

    def __init__(self, context: UserExecutionContext, bus: EventBus) -> None:
        self._context = context
        self._bus = bus
        # re-entrant: a subscriber may emit on the same run from inside a delivery
        self._lock = threading.RLock()
        self._sequence = 0
        self._sent = 0
        self._failed = 0

    @property
    def context(self) -> UserExecutionContext:
        return self._context

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def sequence(self) -> int:
        """The number of the last event emitted (published or not)."""
        return self._sequence

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self._sent, "failed": self._failed, "sequence": self._sequence}

    def emit(self, event_type: str, payload: dict[str, Any]) -> RuntimeEvent | None:
        """Publish an event of any type; the six named methods build their payloads here."""
        context = self._context
        with self._lock:
            self._sequence += 1
            try:
                event = RuntimeEvent(
                    user_id=context.user_id,
                    run_id=context.run_id,
                    sequence=self._sequence,
                    type=event_type,
                    ts=time.time(),
                    payload=payload,
                )
                self._bus.publish(event)
            except Exception as exc:
                self._failed += 1
                if self._failed <= 10 or self._failed % 1000 == 0:
                    _log.warning(
                        "event not delivered; the run continues",
                        user_id=context.user_id,
                        run_id=context.run_id,
                        event_type=event_type,
                        sequence=self._sequence,
                        failed=self._failed,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                return None
            self._sent += 1
            return event

    def agent_started(
        self, agent_name: str, context: Mapping[str, Any] | None = None
    ) -> RuntimeEvent | None:
        run = self._context
        return self.emit(
            AGENT_STARTED,
            {
                "agent_name": _clip(str(agent_name)),
                "context": jsonable(dict(context or {})),
                "thread_id": run.thread_id,
                "request_id": run.request_id,
                "parent_run_id": None if run.parent is None else run.parent.run_id,
                "depth": run.depth,
            },
        )

    def agent_thinking(
        self,
        agent_name: str,
        reasoning: str,
        step_number: int | None = None,
        progress_percentage: float | None = None,
    ) -> RuntimeEvent | None:
        progress = None
        if progress_percentage is not None:
            try:
                number = float(progress_percentage)
            except (TypeError, ValueError):
                number = math.nan
            progress = round(min(100.0, max(0.0, number)), 2) if math.isfinite(number) else None
        return self.emit(
            AGENT_THINKING,
            {
                "agent_name": _clip(str(agent_name)),
                "reasoning": _clip(str(reasoning)),
                "step_number": jsonable(step_number),
                "progress_percentage": progress,
            },
        )

    def tool_executing(
        self, tool_name: str, parameters: Mapping[str, Any] | None = None
    ) -> RuntimeEvent | None:
        return self.emit(
            TOOL_EXECUTING,
            {"tool_name": _clip(str(tool_name)), "parameters": jsonable(dict(parameters or {}))},
        )

    def tool_completed(
        self, tool_name: str, result: Any = None, execution_time_ms: float | None = None
    ) -> RuntimeEvent | None:
        return self.emit(
            TOOL_COMPLETED,
            {
                "tool_name": _clip(str(tool_name)),
                "result": jsonable(result),
                "execution_time_ms": _milliseconds(execution_time_ms),
            },
        )

    def agent_completed(
        self, agent_name: str, result: Any = None, execution_time_ms: float | None = None
    ) -> RuntimeEvent | None:
        return self.emit(
            AGENT_COMPLETED,
            {
                "agent_name": _clip(str(agent_name)),
                "result": jsonable(result),
                "execution_time_ms": _milliseconds(execution_time_ms),
            },
        )

    def agent_error(
        self,
        agent_name: str,
        error: BaseException | str,
        execution_time_ms: float | None = None,
    ) -> RuntimeEvent | None:
        """The run failed. `input_error` says whether the caller's input was at fault (a
        context its planner cannot read, with `field` naming where) rather than the planner."""
        if isinstance(error, BaseException):
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            error_type = type(error).__name__
        else:
            message, error_type = str(error), "Error"
        payload: dict[str, Any] = {
            "agent_name": _clip(str(agent_name)),
            "error": _clip(str(message)),
            "error_type": error_type,
            "execution_time_ms": _milliseconds(execution_time_ms),
            "input_error": isinstance(error, InvalidContext),
        }
        if isinstance(error, InvalidContext):
            payload["field"] = _clip(str(error.field))
        return self.emit(AGENT_ERROR, payload)


def _milliseconds(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 3) if math.isfinite(number) and number >= 0 else None
