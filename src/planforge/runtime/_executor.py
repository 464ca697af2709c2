"""The executor seam: where a run's planning happens.

- `inline`: in this process, on the engine's thread (the library default, and for trusted
  deployments); the planner's module is imported here.
- `process`: a bounded pool of worker processes on this machine (the service default); a
  worker that dies fails only its run.
- `ray`: a Ray cluster, past one machine.

An executor gets a `RunJob` and the server's `Run` (its deadline, cancel flag and event
sink) and returns a `JobOutcome` or raises `JobFailure`. `execute` blocks; the engine calls it
on its planning thread.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from planforge.contract import Run
from planforge.factory import PlannerFactory
from planforge.runtime._jobs import JobOutcome, JobRunner, RunJob
from planforge.runtime._settings import RuntimeSettings

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "build_executor"]

EXECUTORS: Final = ("inline", "process", "ray")


class Executor(Protocol):
    """Plans jobs somewhere; `start` before the first job, `close` at the end."""

    name: str

    def start(self) -> None: ...

    def execute(self, job: RunJob, run: Run) -> JobOutcome: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Plans on the caller's thread with the given factory."""

    name = "inline"

    def __init__(self, factory: PlannerFactory, *, max_stateful: int = 100_000) -> None:
        self.runner = JobRunner(factory, worker="inline", max_stateful=max_stateful)

    def start(self) -> None:
        return None

    def execute(self, job: RunJob, run: Run) -> JobOutcome:
        return self.runner.run(job, run)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "stateful_instances": self.runner.stateful_instances()}

    def close(self) -> None:
        return None


def build_executor(name: str, factory: PlannerFactory, settings: RuntimeSettings) -> Executor:
    """The executor `name` (one of `EXECUTORS`) for `factory`, sized by `settings`."""
    if name == "inline":
        return InlineExecutor(factory, max_stateful=settings.max_users)
    if name == "process":
        from planforge.runtime._process_pool import ProcessExecutor

        return ProcessExecutor(
            factory.recipe(),
            workers=settings.workers,
            memory_mb=settings.worker_memory_mb,
            max_runs=settings.worker_max_runs,
            max_stateful=settings.max_users,
        )
    if name == "ray":
        from planforge.runtime._ray_executor import RayExecutor

        return RayExecutor(factory.recipe(), settings)
    raise ValueError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
