"""Per-user execution: contexts, events, the event bus, emitters and execution engines.

Names are imported on first use (PEP 562), so importing one part (the bus, say) does not
load the engine and, through it, the factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "RuntimeSettings": "planforge.runtime._settings",
    "load_runtime_settings": "planforge.runtime._settings",
    "InvalidContextError": "planforge.runtime.errors",
    "UserExecutionContext": "planforge.runtime._context",
    "new_run_id": "planforge.runtime._context",
    "AGENT_COMPLETED": "planforge.runtime._events",
    "AGENT_ERROR": "planforge.runtime._events",
    "AGENT_STARTED": "planforge.runtime._events",
    "AGENT_THINKING": "planforge.runtime._events",
    "TOOL_COMPLETED": "planforge.runtime._events",
    "TOOL_EXECUTING": "planforge.runtime._events",
    "EVENT_TYPES": "planforge.runtime._events",
    "InvalidEventError": "planforge.runtime.errors",
    "RuntimeEvent": "planforge.runtime._events",
    "EventBus": "planforge.runtime._bus",
    "EventBusError": "planforge.runtime.errors",
    "InProcessEventBus": "planforge.runtime._bus",
    "RedisEventBus": "planforge.runtime._bus",
    "event_bus_from_settings": "planforge.runtime._bus",
    "UserEventEmitter": "planforge.runtime._emitter",
    "ExecutionEngine": "planforge.runtime._engines",
    "ExecutionEngineFactory": "planforge.runtime._engines",
    "RunLimitExceeded": "planforge.runtime.errors",
    "RunTimeout": "planforge.runtime.errors",
    "EngineBusy": "planforge.runtime.errors",
    "EngineClosed": "planforge.runtime.errors",
    "UserCapacityExceeded": "planforge.runtime.errors",
    "RunCancelled": "planforge.runtime.errors",
    "WorkerLost": "planforge.runtime.errors",
    "Executor": "planforge.runtime._executor",
    "InlineExecutor": "planforge.runtime._executor",
    "build_executor": "planforge.runtime._executor",
    "ProcessExecutor": "planforge.runtime._process_pool",
    "RunJob": "planforge.runtime._jobs",
    "JobOutcome": "planforge.runtime._jobs",
    "JobFailure": "planforge.runtime._jobs",
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
    "Executor",
    "InProcessEventBus",
    "InlineExecutor",
    "InvalidContextError",
    "InvalidEventError",
    "JobFailure",
    "JobOutcome",
    "ProcessExecutor",
    "RedisEventBus",
    "RunCancelled",
    "RunJob",
    "RunLimitExceeded",
    "RunTimeout",
    "RuntimeEvent",
    "RuntimeSettings",
    "UserCapacityExceeded",
    "UserEventEmitter",
    "UserExecutionContext",
    "WorkerLost",
    "build_executor",
    "event_bus_from_settings",
    "load_runtime_settings",
    "new_run_id",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from planforge.runtime._bus import (
        EventBus,
        InProcessEventBus,
        RedisEventBus,
        event_bus_from_settings,
    )
    from planforge.runtime._context import UserExecutionContext, new_run_id
    from planforge.runtime._emitter import UserEventEmitter
    from planforge.runtime._engines import ExecutionEngine, ExecutionEngineFactory
    from planforge.runtime._events import (
        AGENT_COMPLETED,
        AGENT_ERROR,
        AGENT_STARTED,
        AGENT_THINKING,
        EVENT_TYPES,
        TOOL_COMPLETED,
        TOOL_EXECUTING,
        RuntimeEvent,
    )
    from planforge.runtime._executor import Executor, InlineExecutor, build_executor
    from planforge.runtime._jobs import JobFailure, JobOutcome, RunJob
    from planforge.runtime._process_pool import ProcessExecutor
    from planforge.runtime._settings import RuntimeSettings, load_runtime_settings
    from planforge.runtime.errors import (
        EngineBusy,
        EngineClosed,
        EventBusError,
        InvalidContextError,
        InvalidEventError,
        RunCancelled,
        RunLimitExceeded,
        RunTimeout,
        UserCapacityExceeded,
        WorkerLost,
    )
