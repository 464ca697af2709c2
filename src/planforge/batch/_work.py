"""What a worker does with a chunk of a batch: plan each input and write its output line.

`plan_chunk` runs as a runtime task job (`RunJob.task`), so it runs wherever the executor
runs jobs: a process worker or a Ray worker, with the factory that worker built. Each input
gets its own run (deadline, configuration), its own error, and its line is made here, so the
lines come out the same whichever executor ran them, and the parent only writes them.
A plan's `created_at` is left out of the line: it is the only part that is not a function of
the inputs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from planforge.contract import CONFIG_CONTEXT_KEY, Plan, Run, accepts_run
from planforge.errors import InvalidContext, PlannerError
from planforge.factory import PlannerFactory

__all__ = ["ChunkItem", "Outcome", "error_line", "plan_chunk", "problem_line"]

_MESSAGE_LIMIT: Final = 1000


class ChunkItem(NamedTuple):
    """One input as a worker receives it (plain data: it crosses a pipe or Ray's store)."""

    position: int
    id: str
    context: dict[str, Any]
    context_digest: str
    config: str | None
    config_digest: str
    objective: str
    planner: str | None


class Outcome(NamedTuple):
    """One input's result: its output line and, when it failed, the reason (an error type);
    how long planning it took and where (neither is part of the line)."""

    position: int
    line: str
    reason: str | None = None
    seconds: float = 0.0
    worker: str = ""


def plan_chunk(
    factory: PlannerFactory, objective: str, payload: dict[str, Any], config: Any
) -> list[Outcome]:
    """Plan each item of `payload["items"]`; one input's failure never touches the others."""
    del objective, config  # each item carries its own (the batch's defaults filled in)
    timeout_s = payload.get("timeout_s")
    return [_plan_one(factory, ChunkItem(*item), timeout_s) for item in payload["items"]]


def _plan_one(factory: PlannerFactory, item: ChunkItem, timeout_s: float | None) -> Outcome:
    started = time.perf_counter()
    try:
        plan = _plan(factory, item, timeout_s)
    except Exception as exc:  # a planner's own bug too: that input's error, never the batch's
        return error_line(item, exc)._replace(seconds=time.perf_counter() - started)
    record = _head(item)
    record["planner"] = plan.planner.name
    record["plan"] = plan.model_dump(mode="json", exclude={"created_at"})
    return Outcome(item.position, _dumps(record), seconds=time.perf_counter() - started)


def _plan(factory: PlannerFactory, item: ChunkItem, timeout_s: float | None) -> Plan:
    context = dict(item.context)
    run = Run(f"batch-{item.position}", timeout_s=timeout_s)
    if item.config is None:  # run_plan admits, selects and plans: the context checked once
        return factory.run_plan(item.objective, context, planner=item.planner, run=run)
    # The configuration goes the way the chosen planner reads it, so the planner is chosen
    # first; run_plan then checks the context a second time (as its own kind).
    kind = factory.admit_context(item.objective, context, planner=item.planner)
    name = item.planner or factory.select_best_planner_name(item.objective, context_kind=kind)
    instance = factory.get_planner(name)
    load = getattr(instance, "load_config", None)
    if not accepts_run(instance):
        context[CONFIG_CONTEXT_KEY] = item.config  # a planner without the run protocol
    elif callable(load):
        run.config = load(item.config)  # parsed here: a bad one is the input's error
    else:
        run.config = item.config
    return factory.run_plan(item.objective, context, planner=name, context_kind=kind, run=run)


def _head(item: ChunkItem | Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.position,
        "context_digest": item.context_digest,
        "config_digest": item.config_digest,
    }


def error_line(item: ChunkItem | Any, error: BaseException, reason: str | None = None) -> Outcome:
    """The output line of an input that failed with `error`."""
    kind = reason or type(error).__name__
    message = error.message if isinstance(error, PlannerError) else f"{kind}: {error}"
    detail: dict[str, Any] = {"type": kind, "message": message[:_MESSAGE_LIMIT]}
    if isinstance(error, InvalidContext):
        detail["field"] = error.field
    record = _head(item)
    record["error"] = detail
    return Outcome(item.position, _dumps(record), kind)


def problem_line(position: int, ident: str, problem: str) -> Outcome:
    """The output line of an input that could not be read at all."""
    record = {"id": ident, "index": position, "context_digest": "", "config_digest": ""}
    record["error"] = {"type": "InvalidInput", "message": problem[:_MESSAGE_LIMIT]}
    return Outcome(position, _dumps(record), "InvalidInput")


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
