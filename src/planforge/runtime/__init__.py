"""Per-user execution: contexts, events, the event bus, emitters and execution engines.

Names are imported on first use (PEP 562), so importing one part (the bus, say) does not
load the engine and, through it, the factory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "RuntimeSettings": "planforge.runtime.settings",
    "load_runtime_settings": "planforge.runtime.settings",
    "InvalidContextError": "planforge.runtime.errors",
    "UserExecutionContext": "planforge.runtime.context",
    "new_run_id": "planforge.runtime.context",
    "AGENT_COMPLETED": "planforge.runtime.events",
    "AGENT_ERROR": "planforge.runtime.events",
    "AGENT_STARTED": "planforge.runtime.events",
    "AGENT_THINKING": "planforge.runtime.events",
    "TOOL_COMPLETED": "planforge.runtime.events",
    "TOOL_EXECUTING": "planforge.runtime.events",
    "EVENT_TYPES": "planforge.runtime.events",
    "InvalidEventError": "planforge.runtime.errors",
    "RuntimeEvent": "planforge.runtime.events",
    "EventBus": "planforge.runtime.bus",
    "EventBusError": "planforge.runtime.errors",
    "InProcessEventBus": "planforge.runtime.bus",
    "RedisEventBus": "planforge.runtime.bus",
    "event_bus_from_settings": "planforge.runtime.bus",
    "UserEventEmitter": "planforge.runtime.emitter",
    "ExecutionEngine": "planforge.runtime.engine",
    "ExecutionEngineFactory": "planforge.runtime.engine",
    "RunLimitExceeded": "planforge.runtime.errors",
    "RunTimeout": "planforge.runtime.errors",
    "EngineBusy": "planforge.runtime.errors",
    "EngineClosed": "planforge.runtime.errors",
    "UserCapacityExceeded": "planforge.runtime.errors",
}

__all__ = [
    "AGENT_COMPLETED",
    "AGENT_ERROR",
    "AGENT_STARTED",
    "AGENT_THINKING",
    "EVENT_TYPES",
    "TOOL_COMPLETED",
    "TOOL_EXECUTING",
    "EngineBusy",
    "EngineClosed",
    "EventBus",
    "EventBusError",
    "ExecutionEngine",
    "ExecutionEngineFactory",
    "InProcessEventBus",
    "InvalidContextError",
    "InvalidEventError",
    "RedisEventBus",
    "RunLimitExceeded",
    "RunTimeout",
    "RuntimeEvent",
    "RuntimeSettings",
    "UserCapacityExceeded",
    "UserEventEmitter",
    "UserExecutionContext",
    "event_bus_from_settings",
    "load_runtime_settings",
    "new_run_id",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'planforge.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from planforge.runtime.bus import (
        EventBus,
        InProcessEventBus,
        RedisEventBus,
        event_bus_from_settings,
    )
    from planforge.runtime.context import UserExecutionContext, new_run_id
    from planforge.runtime.emitter import UserEventEmitter
    from planforge.runtime.engine import ExecutionEngine, ExecutionEngineFactory
    from planforge.runtime.errors import (
        EngineBusy,
        EngineClosed,
        EventBusError,
        InvalidContextError,
        InvalidEventError,
        RunLimitExceeded,
        RunTimeout,
        UserCapacityExceeded,
    )
    from planforge.runtime.events import (
        AGENT_COMPLETED,
        AGENT_ERROR,
        AGENT_STARTED,
        AGENT_THINKING,
        EVENT_TYPES,
        TOOL_COMPLETED,
        TOOL_EXECUTING,
        RuntimeEvent,
    )
    from planforge.runtime.settings import RuntimeSettings, load_runtime_settings
