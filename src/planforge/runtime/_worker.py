"""A worker process of the `process` executor: it imports planners, so the server never does.

The server sends `("run", RunJob)` on the pipe; the worker answers with `("event", (type,
payload))` for each run-protocol event, then `("done", JobOutcome)` or `("failed", wire)`.
`("stop", None)` or a closed pipe ends it. Its address space is capped, so a planner that
allocates without bound gets a `MemoryError` (or the kernel's kill) in the worker, not in
the server.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from planforge.contract import Run, RunEvent
from planforge.runtime._jobs import JobFailure, JobRunner, RunJob

__all__ = ["worker_main"]

# Native thread pools multiply a worker's address space; one thread each keeps the cap honest.
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_memory(memory_mb: int) -> None:
    """Cap this process's address space at `memory_mb` MiB (0: no cap)."""
    if memory_mb <= 0:
        return
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def worker_main(
    conn: Connection, recipe: dict[str, Any], memory_mb: int, max_stateful: int
) -> None:
    """The worker's loop; returns (ending the process) when the server says stop or goes."""
    for name in _ONE_THREAD:
        os.environ.setdefault(name, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    limit_memory(memory_mb)
    from planforge.factory import PlannerFactory

    runner = JobRunner(PlannerFactory(**recipe), f"process:{os.getpid()}", max_stateful)
    send_lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with send_lock:  # a planner may report from threads of its own
            try:
                conn.send(message)
            except (BrokenPipeError, ConnectionResetError):  # the server is gone: so are we
                os._exit(0)

    def forward(event: RunEvent) -> None:
        send(("event", (event.type, dict(event.payload))))

    while True:
        try:
            kind, job = conn.recv()
        except (EOFError, OSError):
            return
        if kind != "run":
            return
        if not _plan_one(runner, job, send, forward):
            return


def _plan_one(runner: JobRunner, job: RunJob, send: Any, forward: Any) -> bool:
    """Plan one job and answer; False when this worker should end (it ran out of memory)."""
    run = Run(job.run_id, config=job.config, timeout_s=job.timeout_s, sink=forward)
    try:
        outcome = runner.run(job, run)
    except JobFailure as failure:
        # after a MemoryError this interpreter may be half-broken: say so, then end
        retire = "MemoryError" in failure.error.message
        send(("failed", {**failure.to_wire(), "retire": retire}))
        return not retire
    except MemoryError:
        return False
    send(("done", outcome))
    return True
