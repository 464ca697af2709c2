"""One run's reporter: turns a run's progress into the user's events, silent once it ended."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from planforge.contract import (
    RUN_MODULE_COMPLETED,
    RUN_MODULE_FAILED,
    RUN_MODULE_STARTED,
    RUN_PROGRESS,
    Plan,
    RunEvent,
)
from planforge.runtime._emitter import UserEventEmitter

__all__ = ["RunReporter", "plan_summary"]


class RunReporter:
    """Turns one run's progress into the user's events; silent once the run has ended.

    The terminal event (completed or error) is sent under the same lock that closes the
    reporter, so an abandoned planner thread that reports late can never send an event
    after it. A planner's run-protocol events (`planforge.contract.Run`) are translated here.
    """

    __slots__ = (
        "_abandoned",
        "_emitter",
        "_lock",
        "_open",
        "_step",
        "_thread_done",
        "late_events",
        "plan_duration_s",
        "planner_name",
        "planning_started",
        "worker",
    )

    def __init__(self, emitter: UserEventEmitter) -> None:
        self._emitter = emitter
        self._lock = threading.Lock()
        self._open = True
        self._step = 0
        self._abandoned = False
        self._thread_done = False
        self.late_events = 0
        self.planner_name: str | None = None
        self.planning_started: float | None = None  # perf_counter when plan() was called
        self.plan_duration_s: float | None = None
        self.worker: str | None = None  # which process planned, once it answered

    def abandon(self) -> bool:
        """The run timed out: True if its thread is still working (it will say when done)."""
        with self._lock:
            self._abandoned = True
            return not self._thread_done

    def thread_done(self) -> bool:
        """The planning thread ended: True if the run was abandoned before that."""
        with self._lock:
            self._thread_done = True
            return self._abandoned

    def started(self, name: str, details: dict[str, Any]) -> None:
        with self._lock:
            if self._open:
                self._emitter.agent_started(name, details)
            else:
                self.late_events += 1

    def thinking(self, reasoning: str, progress: float) -> None:
        with self._lock:
            if not self._open:
                self.late_events += 1
                return
            self._step += 1
            self._emitter.agent_thinking(
                self.planner_name or "planforge", reasoning, self._step, progress
            )

    def on_run_event(self, event: RunEvent) -> None:
        """A planner's run-protocol event -> the user's event (called on the planning thread)."""
        kind = event.type
        if kind not in _TRANSLATED:
            return  # a planner's own event types are its business
        with self._lock:
            if not self._open:
                self.late_events += 1
                return
            _TRANSLATED[kind](self, event.payload)

    def _module_started(self, payload: Mapping[str, Any]) -> None:
        self._emitter.tool_executing(
            str(payload.get("module", "")), {"operation": payload.get("operation")}
        )

    def _module_completed(self, payload: Mapping[str, Any]) -> None:
        self._emitter.tool_completed(
            str(payload.get("module", "")),
            {
                "ok": True,
                "operation": payload.get("operation"),
                "slow": bool(payload.get("slow", False)),
            },
            float(payload.get("duration_ms", 0.0)),
        )

    def _module_failed(self, payload: Mapping[str, Any]) -> None:
        self._emitter.tool_completed(
            str(payload.get("module", "")),
            {
                "ok": False,
                "operation": payload.get("operation"),
                "error": payload.get("error"),
                "error_type": payload.get("error_type"),
            },
            float(payload.get("duration_ms", 0.0)),
        )

    def _progress(self, payload: Mapping[str, Any]) -> None:
        total = int(payload.get("total", 0))
        done = int(payload.get("done", 0))
        progress = round(100.0 * done / total, 2) if total else 100.0
        self._step += 1
        message = str(payload.get("message") or f"{done} of {total} done")
        self._emitter.agent_thinking(
            self.planner_name or "planforge", message, self._step, progress
        )

    def completed(self, result: dict[str, Any], elapsed_ms: float) -> None:
        with self._lock:
            self._open = False
            self._emitter.agent_completed(self.planner_name or "planforge", result, elapsed_ms)

    def failed(self, agent_name: str, error: BaseException | str, elapsed_ms: float) -> None:
        with self._lock:
            self._open = False
            self._emitter.agent_error(agent_name, error, elapsed_ms)


def plan_summary(plan: Plan, planner_name: str) -> dict[str, Any]:
    improvement = plan.metrics.get("improvement")
    return {
        "plan_id": plan.plan_id,
        "planner": planner_name,
        "steps": len(plan.steps),
        "score": plan.score,
        "improvement": improvement,
        "warnings": len(plan.warnings),
    }


_TRANSLATED: dict[str, Callable[[RunReporter, Mapping[str, Any]], None]] = {
    RUN_MODULE_STARTED: RunReporter._module_started,
    RUN_MODULE_COMPLETED: RunReporter._module_completed,
    RUN_MODULE_FAILED: RunReporter._module_failed,
    RUN_PROGRESS: RunReporter._progress,
}
