"""The run object of the run protocol (see `planforge.contract`): what a runtime hands a
planner that declares `accepts_run = True`.

One object carries what a long plan needs from whoever runs it: a place to say how far it
got (the event sink), the configuration the request chose, whether the request wants to know
why (`explain`), and when to stop (a deadline and a cancel flag). Checking it costs one clock
read, so a planner can check between any two steps of its work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from planforge.errors import PlannerError, RunStopped

__all__ = [
    "RUN_MODULE_COMPLETED",
    "RUN_MODULE_FAILED",
    "RUN_MODULE_STARTED",
    "RUN_PROGRESS",
    "Run",
    "RunEvent",
    "RunEventSink",
]

#: Event types a runtime understands; a planner may emit others, which are passed on as-is.
RUN_MODULE_STARTED: Final = "module_started"
RUN_MODULE_COMPLETED: Final = "module_completed"
RUN_MODULE_FAILED: Final = "module_failed"
RUN_PROGRESS: Final = "progress"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One thing a planner reports during a run; `payload` is a read-only copy."""

    type: str
    payload: Mapping[str, Any]
    run_id: str


RunEventSink = Callable[[RunEvent], None]


class Run:
    """One planning run: its id, its event sink, its chosen configuration and its deadline.

    `config` is what the request chose (a bucket's configuration text, a preset name, a path,
    or an object the planner itself understands); None means the planner's default.
    `explain` asks the planner to say why it chose its plan: one that can attaches
    `Plan.explanation`; one that cannot ignores it, so asking never fails a run. The
    deadline is `timeout_s` after the run object was made, on `clock` (monotonic seconds).
    `check()` raises `RunStopped` once the deadline has passed or `cancel()` was called; the
    runtime cancels a run that timed out, so a planner that checks stops soon after.

    Thread-safe for its purpose: the runtime cancels from one thread while the planner checks
    from another; the flag is a plain attribute written once.
    """

    __slots__ = ("_clock", "_sink", "_stopped", "config", "deadline", "explain", "run_id")

    def __init__(
        self,
        run_id: str = "",
        *,
        config: object | None = None,
        explain: bool = False,
        timeout_s: float | None = None,
        sink: RunEventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
        ):
            raise PlannerError(
                f"A run's timeout_s must be a positive number of seconds, got {timeout_s!r}.",
                where="run",
            )
        self.run_id = run_id
        self.config = config
        self.explain = explain
        self._clock = clock
        self._sink = sink
        self._stopped: str | None = None
        #: When the run must end, on `clock`; None: no deadline.
        self.deadline: float | None = None if timeout_s is None else clock() + timeout_s

    def __repr__(self) -> str:
        state = self._stopped or ("expired" if self.expired else "running")
        return f"Run(run_id={self.run_id!r}, {state})"

    # -- the deadline ---------------------------------------------------------------------

    def cancel(self, reason: str = "it was cancelled") -> None:
        """Ask the planner to stop: its next `check()` raises `RunStopped` with `reason`."""
        if self._stopped is None:
            self._stopped = reason

    @property
    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (0 when passed or cancelled); None: no deadline."""
        if self._stopped is not None:
            return 0.0
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._clock())

    @property
    def expired(self) -> bool:
        """Whether the planner should stop now (deadline passed or run cancelled)."""
        if self._stopped is not None:
            return True
        return self.deadline is not None and self._clock() >= self.deadline

    def check(self) -> None:
        """Raise `RunStopped` if the run should stop; call it between steps of the work."""
        if self._stopped is not None:
            raise RunStopped(self.run_id, self._stopped)
        if self.deadline is not None and self._clock() >= self.deadline:
            raise RunStopped(self.run_id, "its deadline passed")

    # -- events ---------------------------------------------------------------------------

    def emit(self, type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Report something to whoever runs the plan (nothing happens without a sink)."""
        if self._sink is not None:
            frozen = MappingProxyType(dict(payload)) if payload else _EMPTY
            self._sink(RunEvent(type, frozen, self.run_id))

    def progress(self, done: int, total: int, message: str = "") -> None:
        """`done` of `total` units of work are finished; `message` says what in words."""
        self.emit(RUN_PROGRESS, {"done": done, "total": total, "message": message})

    def module_started(self, module: str, *, operation: str | None = None) -> None:
        self.emit(RUN_MODULE_STARTED, {"module": module, "operation": operation})

    def module_completed(
        self,
        module: str,
        duration_ms: float,
        *,
        operation: str | None = None,
        slow: bool = False,
    ) -> None:
        self.emit(
            RUN_MODULE_COMPLETED,
            {"module": module, "operation": operation, "duration_ms": duration_ms, "slow": slow},
        )

    def module_failed(
        self,
        module: str,
        duration_ms: float,
        error: str,
        *,
        error_type: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.emit(
            RUN_MODULE_FAILED,
            {
                "module": module,
                "operation": operation,
                "duration_ms": duration_ms,
                "error": error,
                "error_type": error_type,
            },
        )
