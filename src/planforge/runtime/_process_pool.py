"""The `process` executor: a bounded pool of worker processes on this machine.

Each worker is a fresh interpreter (spawned, never forked from the threaded server) with its
own factory; only workers import plugin planners. One run at a time per worker, over a pipe.
A worker that dies (an `os._exit`, a segfault, SIGKILL, the kernel's OOM killer) fails only
its run, with the exit code or signal as the cause, and a new worker takes its place. A run's
deadline or cancellation kills the worker doing it: the work stops, not only the wait. A
worker is replaced after `max_runs` runs, so a slow leak in a planner is bounded too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Final

from planforge.contract import Run
from planforge.errors import RunStopped
from planforge.logs import get_logger
from planforge.runtime._jobs import JobFailure, JobOutcome, RunJob
from planforge.runtime._worker import worker_main
from planforge.runtime.errors import WorkerLost

__all__ = ["ProcessExecutor", "exit_cause"]

_POLL_S: Final = 0.05  # how often a waiting run looks at its deadline and cancel flag
_STOP_GRACE_S: Final = 2.0
_log = get_logger("runtime.workers")


def exit_cause(exitcode: int | None) -> str:
    """A worker's end in words: its exit code, or the signal that killed it."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return f"killed by {name}: the memory limit, the kernel's OOM killer or an operator"
    return f"killed by {name}"


class _Worker:
    """The server's handle on one worker process."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.runs = 0
        self.retiring = False  # it said it will end after its answer
        self._closing = threading.Lock()

    @property
    def label(self) -> str:
        return f"process:{self.process.pid}"

    def execute(self, job: RunJob, run: Run) -> JobOutcome:
        started = time.perf_counter()
        try:
            self.conn.send(("run", job))
        except (OSError, ValueError):
            raise self._lost(job, started) from None
        while True:
            ready = wait([self.conn, self.process.sentinel], _POLL_S)
            if self.conn in ready or (ready and self.conn.poll()):
                try:
                    kind, payload = self.conn.recv()
                except (EOFError, OSError):
                    raise self._lost(job, started) from None
                if kind == "event":
                    run.emit(payload[0], payload[1])
                    continue
                self.runs += 1
                if kind == "done":
                    outcome: JobOutcome = payload
                    return outcome
                self.retiring = bool(payload.get("retire"))
                raise JobFailure.from_wire(payload)
            if ready:  # the sentinel alone: the process ended with nothing left to read
                raise self._lost(job, started)
            try:
                run.check()
            except RunStopped as stop:
                self.kill()
                elapsed = time.perf_counter() - started
                raise JobFailure(stop, "stopped", elapsed, self.label) from None

    def _lost(self, job: RunJob, started: float) -> JobFailure:
        self.process.join(_STOP_GRACE_S)
        cause = exit_cause(self.process.exitcode)
        _log.warning("worker died", worker=self.label, run_id=job.run_id, cause=cause)
        error = WorkerLost(job.run_id, job.planner, cause)
        return JobFailure(error, "lost", time.perf_counter() - started, self.label)

    def kill(self) -> None:
        """End the process and close the pipe; safe from several threads at once (a run's
        thread and `close` may both get here)."""
        with self._closing:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(_STOP_GRACE_S)
            if not self.conn.closed:
                with contextlib.suppress(OSError):
                    self.conn.close()

    def stop(self) -> None:
        """Ask the worker to end; kill it if it does not within the grace period."""
        self.ask_to_stop()
        self.process.join(_STOP_GRACE_S)
        self.kill()

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone: nothing to ask
            self.conn.send(("stop", None))


class ProcessExecutor:
    """`workers` worker processes; runs beyond that wait for a free one (within their deadline)."""

    name = "process"

    def __init__(
        self,
        recipe: dict[str, Any],
        *,
        workers: int,
        memory_mb: int = 0,
        max_runs: int = 500,
        max_stateful: int = 100_000,
    ) -> None:
        if workers < 1 or max_runs < 1:
            raise ValueError("workers and max_runs must be at least 1")
        self._recipe = recipe
        self.workers = workers
        self.memory_mb = memory_mb
        self.max_runs = max_runs
        self._max_stateful = max_stateful
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue(maxsize=workers)
        self._lock = threading.Lock()
        self._live: dict[int, _Worker] = {}
        self._started = False
        self._closed = False
        self.lost = 0
        self.replaced = 0

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        for _ in range(self.workers):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main,
            args=(child, self._recipe, self.memory_mb, self._max_stateful),
            name="planforge-worker",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        with self._lock:
            self._live[id(worker)] = worker
        return worker

    def execute(self, job: RunJob, run: Run) -> JobOutcome:
        self.start()
        worker = self._take(run)
        healthy = False
        try:
            outcome = worker.execute(job, run)
            healthy = True
            return outcome
        except JobFailure as failure:
            healthy = failure.stage not in ("lost", "stopped") and not worker.retiring
            if failure.stage == "lost":
                self.lost += 1
            raise
        finally:
            self._give_back(worker, healthy)

    def _take(self, run: Run) -> _Worker:
        while True:
            if self._closed:
                raise JobFailure(RunStopped(run.run_id, "the executor was closed"), "stopped")
            try:
                worker = self._idle.get(timeout=_POLL_S)
            except queue.Empty:
                pass
            else:
                if worker.process.is_alive():
                    return worker
                self._give_back(worker, healthy=False)  # it died idle: replace it, look again
            try:
                run.check()
            except RunStopped as stop:
                raise JobFailure(stop, "stopped") from None

    def _give_back(self, worker: _Worker, healthy: bool) -> None:
        if healthy and worker.runs < self.max_runs and not self._closed:
            self._idle.put(worker)
            return
        with self._lock:
            self._live.pop(id(worker), None)
        if healthy:
            worker.stop()
        else:
            worker.kill()
        if not self._closed:
            self.replaced += 1
            self._idle.put(self._spawn())

    def worker_pids(self) -> list[int]:
        """The pids of the live workers (for operators and tests)."""
        with self._lock:
            return sorted(w.process.pid or 0 for w in self._live.values())

    def describe(self) -> dict[str, Any]:
        return {
            "executor": self.name,
            "workers": self.workers,
            "idle": self._idle.qsize(),
            "lost": self.lost,
            "replaced": self.replaced,
            "memory_mb": self.memory_mb,
            "max_runs": self.max_runs,
        }

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._live.values())
            self._live.clear()
        for worker in workers:  # a busy worker's run is failing anyway; an idle one holds nothing
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in workers:
            worker.process.join(_STOP_GRACE_S)
            worker.kill()
