"""`plan_many`: many portfolios planned on the runtime's executors, results as they finish.

Inputs are streamed: at most `2 x workers` chunks are in flight, so memory stays bounded
whatever the input's size. A chunk (`chunk_size` inputs) is one runtime task job, so the
per-job cost of a pipe or a Ray task is paid once per chunk, not once per portfolio. A chunk
whose worker died or ran past its deadline is planned again one input at a time: only the
input that kills a worker or hangs fails, with the cause, and the others are planned.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from planforge.batch._inputs import BatchInput, config_digest, context_digest, inputs_from
from planforge.batch._work import ChunkItem, Outcome, error_line, plan_chunk, problem_line
from planforge.contract import Run
from planforge.factory import PlannerFactory
from planforge.runtime._executor import Executor, InlineExecutor
from planforge.runtime._jobs import JobFailure, RunJob

__all__ = ["DEFAULT_OBJECTIVE", "EXECUTOR_NAMES", "BatchResult", "plan_many"]

DEFAULT_OBJECTIVE: Final = "Rebalance my portfolio"
EXECUTOR_NAMES: Final = ("process", "ray", "inline")
DEFAULT_CHUNK: Final = 8
#: Least slack on a chunk's deadline beyond its inputs' own (a new worker builds its factory).
_CHUNK_SLACK_S: Final = 2.0

#: Decides, from an input and its two digests, that it is already planned (`--resume`).
Skip = Callable[[BatchInput, str, str], bool]


class BatchResult(NamedTuple):
    """One input's result: its output line (JSON) and, when it failed, the error type; the
    input's context, and how long planning it took on which worker."""

    position: int
    id: str
    line: str
    reason: str | None = None
    context: dict[str, Any] | None = None
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    def record(self) -> dict[str, Any]:
        """The line as data: `id`, `index`, the digests, then `planner` and `plan`, or `error`."""
        data: dict[str, Any] = json.loads(self.line)
        return data


@dataclass(frozen=True)
class _Defaults:
    objective: str
    config: str | None
    planner: str | None
    timeout_s: float


def plan_many(
    contexts: Iterable[Any],
    *,
    executor: str | Executor = "process",
    workers: int | None = None,
    address: str | None = None,
    config: str | None = None,
    objective: str = DEFAULT_OBJECTIVE,
    planner: str | None = None,
    timeout_s: float = 60.0,
    chunk_size: int = DEFAULT_CHUNK,
    factory: PlannerFactory | None = None,
    skip: Skip | None = None,
) -> Iterator[BatchResult]:
    """Plan every context and yield each result as it finishes (not in input order).

    `contexts`: context mappings, `(id, context)` pairs, `{"id", "context"}` mappings or
    `BatchInput`s. `executor`: `process` (a pool of `workers` processes, default one per
    core), `ray` (the cluster at `address` or `PLANFORGE_RAY_ADDRESS`), `inline`, or an
    executor you built. `config`: a preset name or TOML text for inputs that name none.
    `timeout_s` bounds each input. An executor built here is closed when the iteration ends
    (however it ends); one you pass in is started and left open.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    defaults = _Defaults(objective, config, planner, timeout_s)
    owned = factory is None
    factory = factory or PlannerFactory()
    built: Executor | None = None
    try:
        built, capacity = _open(executor, factory, workers, address)
        batch = _Batch(built, defaults, chunk_size, capacity, skip)
        yield from batch.results(inputs_from(contexts))
    finally:
        if built is not None and isinstance(executor, str):
            built.close()
        if owned:
            factory.close()


def _open(
    executor: str | Executor, factory: PlannerFactory, workers: int | None, address: str | None
) -> tuple[Executor, int]:
    """The started executor and how many chunks to keep in flight on it."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if not isinstance(executor, str):
        executor.start()
        return executor, 2 * (workers or os.cpu_count() or 1)
    if executor == "inline":
        return InlineExecutor(factory), 1
    from planforge.runtime._settings import load_runtime_settings

    settings = load_runtime_settings()
    if executor == "process":
        from planforge.runtime._process_pool import ProcessExecutor

        count = workers or os.cpu_count() or 1
        pool = ProcessExecutor(
            factory.recipe(),
            workers=count,
            memory_mb=settings.worker_memory_mb,
            max_runs=settings.worker_max_runs,
        )
        pool.start()
        return pool, 2 * count
    if executor == "ray":
        from planforge.runtime._ray_executor import RayExecutor

        if address is not None:
            settings = settings.model_copy(update={"ray_address": address})
        cluster = RayExecutor(factory.recipe(), settings, events=False)
        try:
            cpus = cluster.cluster_cpus()
        except BaseException:
            cluster.close()
            raise
        return cluster, 2 * (workers or cpus)
    raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTOR_NAMES)}")


class _Batch:
    """Chunks the inputs, keeps a bounded number of chunks in flight, yields their results."""

    def __init__(
        self,
        executor: Executor,
        defaults: _Defaults,
        chunk_size: int,
        capacity: int,
        skip: Skip | None,
    ) -> None:
        self.executor = executor
        self.defaults = defaults
        self.chunk_size = chunk_size
        self.capacity = capacity
        self.skip = skip

    def results(self, inputs: Iterator[BatchInput]) -> Iterator[BatchResult]:
        pool = futures.ThreadPoolExecutor(self.capacity, thread_name_prefix="planforge-batch")
        pending: set[futures.Future[list[Outcome]]] = set()
        chunk: list[ChunkItem] = []
        inflight: dict[int, BatchInput] = {}
        try:
            for item in inputs:
                if item.problem is not None or item.context is None:
                    problem = item.problem or "no context"
                    yield _result(problem_line(item.position, item.id, problem), item)
                    continue
                work = self._item(item)
                if self.skip is not None and self.skip(
                    item, work.context_digest, work.config_digest
                ):
                    continue
                inflight[item.position] = item
                chunk.append(work)
                if len(chunk) >= self.chunk_size:
                    pending.add(pool.submit(self._planned, chunk))
                    chunk = []
                while len(pending) >= self.capacity:
                    pending = yield from _finished(pending, inflight, futures.FIRST_COMPLETED)
            if chunk:
                pending.add(pool.submit(self._planned, chunk))
            while pending:
                pending = yield from _finished(pending, inflight, futures.FIRST_COMPLETED)
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _skipped(self, item: BatchInput, work: ChunkItem) -> bool:
        return self.skip is not None and self.skip(item, work.context_digest, work.config_digest)

    def _item(self, item: BatchInput) -> ChunkItem:
        defaults = self.defaults
        config = item.config if item.config is not None else defaults.config
        assert item.context is not None
        return ChunkItem(
            item.position,
            item.id,
            item.context,
            context_digest(item.context),
            config,
            config_digest(config),
            item.objective or defaults.objective,
            item.planner or defaults.planner,
        )

    def _planned(self, chunk: list[ChunkItem]) -> list[Outcome]:
        """The chunk's outcomes; after a lost or stopped chunk, each input again on its own."""
        timeout_s = self.defaults.timeout_s
        first = chunk[0]
        job = RunJob(
            run_id=f"batch-{first.position}",
            user_id="batch",
            planner=first.planner or "batch",
            objective=first.objective,
            context={"items": [tuple(item) for item in chunk], "timeout_s": timeout_s},
            timeout_s=timeout_s * len(chunk) + max(_CHUNK_SLACK_S, timeout_s),
            task=plan_chunk,
        )
        try:
            outcome = self.executor.execute(job, Run(job.run_id, timeout_s=job.timeout_s))
        except JobFailure as failure:
            if len(chunk) > 1 and failure.stage in ("lost", "stopped"):
                return [outcome for item in chunk for outcome in self._planned([item])]
            worker, seconds = failure.worker, failure.duration_s or 0.0
            return [
                error_line(item, failure.error)._replace(worker=worker, seconds=seconds)
                for item in chunk
            ]
        outcomes: list[Outcome] = outcome.value
        return [each._replace(worker=outcome.worker) for each in outcomes]


def _finished(
    pending: set[futures.Future[list[Outcome]]],
    inflight: dict[int, BatchInput],
    until: str,
) -> Generator[BatchResult, None, set[futures.Future[list[Outcome]]]]:
    """Yield the results of the chunks that are done; return the ones still running."""
    done, still = futures.wait(pending, return_when=until)
    for future in done:
        for outcome in future.result():
            yield _result(outcome, inflight.pop(outcome.position))
    return still


def _result(outcome: Outcome, item: BatchInput) -> BatchResult:
    return BatchResult(
        outcome.position,
        item.id,
        outcome.line,
        outcome.reason,
        item.context,
        outcome.seconds,
        outcome.worker,
    )
