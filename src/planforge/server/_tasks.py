"""Work of the service that loads planner code but is no plan run: sent where plans run.

An A/B comparison, a dry run and a bucket's health check build holistic engines, which import
module plugins. The service sends them to its executor as task jobs, so they run in a worker
(for `process` and `ray`) and a hostile module can take down a worker, never the server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from planforge.configstore import BUCKET_PLANNER
from planforge.contract import Run
from planforge.factory import PlannerFactory
from planforge.runtime import JobFailure, RunJob, new_run_id
from planforge.server._state import ServiceState

__all__ = ["Task", "run_task"]

Task = Callable[[PlannerFactory, str, dict[str, Any], Any], Any]


def run_task(
    state: ServiceState,
    user: str,
    task: Task,
    config: Any,
    *,
    objective: str = "",
    context: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
) -> Any:
    """`task(factory, objective, context, config)` on the executor; blocking (call it off
    the event loop). Raises the task's own error, or `RunStopped` at the timeout."""
    limit = state.engines.settings.run_timeout_s if timeout_s is None else timeout_s
    job = RunJob(
        new_run_id(),
        user,
        BUCKET_PLANNER,
        objective,
        dict(context or {}),
        config,
        limit,
        task=task,
    )
    try:
        outcome = state.engines.executor.execute(job, Run(job.run_id, timeout_s=limit))
    except JobFailure as failure:
        raise failure.error from None
    return outcome.value
