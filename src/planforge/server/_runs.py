"""The service's runs, kept in the store's `runs` table so every replica answers for them.

A run is written `queued` before the answer 202, then claimed by this replica (`running`,
under a lease) and executed by an engine. While it runs, a lease loop renews it and looks for
a cancel requested through any replica. Any replica takes up what others left: a queued run
nobody claimed (this replica was full, or its replica died before claiming), and a run whose
lease expired (its replica died mid-run), which the store sends back to the queue once or
ends `interrupted`. Nothing stays `running` forever, and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

from planforge.configstore import ConfigStore, StoredRun
from planforge.contract import Plan
from planforge.errors import InvalidContext, PlannerError
from planforge.logs import get_logger
from planforge.runtime import ExecutionEngine, ExecutionEngineFactory, UserExecutionContext
from planforge.runtime.errors import RunCancelled, RunLimitExceeded, UserCapacityExceeded

__all__ = ["RunService", "replica_name"]

_log = get_logger("server.runs")
_TEXT_LIMIT: Final = 2000
_MAX_ATTEMPTS: Final = 2  # a run whose replica died is tried once more, then interrupted
_PRUNE_EVERY_S: Final = 600.0
_FINISHED_KEPT: Final = 10_000
_DB_THREADS: Final = 8
T = TypeVar("T")


def replica_name() -> str:
    """This process's name in leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunService:
    """Starts, executes, recovers and cancels the runs of one replica."""

    def __init__(
        self, store: ConfigStore, engines: ExecutionEngineFactory, *, lease_s: float
    ) -> None:
        self.store = store
        self.engines = engines
        self.lease_s = lease_s
        self.replica = replica_name()
        self._local: dict[str, ExecutionEngine] = {}
        # What polling clients read most, served without the database: the runs this
        # replica executes (as claimed) and the last runs it finished (final, immutable).
        self._running: dict[str, StoredRun] = {}
        self._finished: OrderedDict[str, StoredRun] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        # The runs table's calls get threads of their own: runs waiting for a worker hold
        # the loop's default threads, and must never delay the writes that end other runs.
        self._db_threads = ThreadPoolExecutor(_DB_THREADS, "planforge-runs")

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking call of the runs table, on the table's own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_threads, partial(call, *args, **kwargs))

    # -- starting ------------------------------------------------------------------------

    async def submit(
        self, user: str, request: dict[str, Any], *, request_id: str | None
    ) -> dict[str, Any]:
        """Record a new run and start it here; `request` holds the admitted request's fields.

        Raises `RunLimitExceeded` (429) before anything is written when the user is full.
        """
        context = UserExecutionContext.create(user, request_id=request_id)
        engine = self.engines.create_for_user(context)
        try:
            claimed = await self._db(
                self.store.runs.create,
                run_id=context.run_id,
                user=user,
                objective=request["objective"],
                context=request["context"],
                request_id=context.request_id,
                planner=request.get("planner"),
                bucket=request.get("bucket"),
                context_kind=request.get("context_kind"),
                timeout_s=request.get("timeout_s"),
                owner=self.replica,  # recorded as claimed by this replica, in one transaction
                lease_s=self.lease_s,
            )
        except BaseException:
            self.engines.cleanup(engine)
            raise
        self._start(engine, claimed, request["context"])
        return {"run_id": context.run_id, "status": "running"}

    def _start(
        self, engine: ExecutionEngine, stored: StoredRun, context: dict[str, Any] | None = None
    ) -> None:
        self._local[engine.run_id] = engine
        self._running[engine.run_id] = stored
        task = asyncio.get_running_loop().create_task(
            self._execute(engine, stored, context), name=f"plan-{engine.run_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self, engine: ExecutionEngine, stored: StoredRun, context: dict[str, Any] | None
    ) -> None:
        run_id = engine.run_id
        try:
            if context is None:  # a run taken up from the table: its context is stored there
                full = await self._db(self.store.runs.get, run_id, with_context=True)
                context = {} if full is None else full.context
            await engine.run(
                stored.objective,
                context,
                planner=stored.planner,
                bucket=stored.bucket,
                timeout_s=stored.timeout_s,
                context_kind=stored.context_kind,
                admitted=True,  # validated before the run was first accepted
                on_outcome=lambda outcome: self._record(engine, outcome),
            )
        except asyncio.CancelledError:  # shutdown: the lease lapses and a replica retries it
            raise
        except Exception:  # recorded by the hook, reported by the run's events
            pass
        finally:
            self._local.pop(run_id, None)
            self._running.pop(run_id, None)
            self.engines.cleanup(engine)

    async def _record(self, engine: ExecutionEngine, outcome: Plan | BaseException) -> None:
        """The run's outcome into its record, before its last event reaches the client."""
        runs, run_id = self.store.runs, engine.run_id
        details = _planner_details(engine.details)
        if isinstance(outcome, Plan):
            plan = outcome.model_dump(mode="json")
            await self._db(runs.complete, run_id, self.replica, plan, details=details)
        else:
            status = "cancelled" if isinstance(outcome, RunCancelled) else "failed"
            error = _error_of(outcome)
            await self._db(runs.fail, run_id, self.replica, error, status=status, details=details)
        finished = await self._db(runs.get, run_id)
        if finished is not None and finished.finished:  # it never changes again: keep it
            self._finished[run_id] = finished
            while len(self._finished) > _FINISHED_KEPT:
                self._finished.popitem(last=False)

    # -- the lease loop ------------------------------------------------------------------

    async def start(self) -> None:
        """Take up what earlier processes left, then keep leases and the queue moving. The
        service starts even when the database is down (`/readyz` says so); the loop retries."""
        await self._tick_logged()
        self._loop_task = asyncio.get_running_loop().create_task(
            self._loop(), name="planforge-run-leases"
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            await self._tick_logged()

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except Exception as exc:  # the loop must outlive one bad pass (a database blip)
            _log.error("run lease pass failed", error=type(exc).__name__, message=str(exc)[:500])

    async def tick(self) -> None:
        """One pass: renew this replica's leases (stopping runs cancelled elsewhere), send
        expired runs back to the queue, prune finished runs every ten minutes (the store's
        documented bounds), and claim queued runs this replica has room for."""
        runs = self.store.runs
        for run_id, engine in list(self._local.items()):
            await self._db(runs.renew, run_id, self.replica, self.lease_s)
            stored = await self._db(runs.get, run_id)
            if stored is not None and stored.cancel_requested:
                engine.cancel("cancelled by request")
        await self._db(runs.recover_expired, self.replica, max_attempts=_MAX_ATTEMPTS)
        if time.monotonic() >= self._next_prune:  # the bounds of the runs table, now and then
            self._next_prune = time.monotonic() + _PRUNE_EVERY_S
            await self._db(runs.prune)
        room = self.engines.settings.workers * 2 - len(self._local)
        if room > 0:
            for stored in await self._db(runs.claim_queued, self.replica, self.lease_s, room):
                self._take_up(stored)

    def _take_up(self, stored: StoredRun) -> None:
        context = UserExecutionContext.create(
            stored.user, request_id=stored.request_id, run_id=stored.run_id
        )
        try:
            engine = self.engines.create_for_user(context)
        except (RunLimitExceeded, UserCapacityExceeded):
            # The user is at their limit here: the lease lapses and the run comes back.
            return
        self._start(engine, stored)

    # -- reading and cancelling ----------------------------------------------------------

    async def get(self, run_id: str, user: str) -> StoredRun | None:
        """`user`'s run: from memory when this replica ran or runs it, else the database."""
        known = self._finished.get(run_id) or self._running.get(run_id)
        if known is not None:
            return known if known.user == user else None
        return await self._db(self.store.runs.get, run_id, user=user)

    async def cancel(self, run_id: str, user: str, *, admin: bool) -> StoredRun:
        """Cancel a run (its owner or an admin); a run executing here stops at once."""
        stored = await self._db(self.store.runs.request_cancel, run_id, user=user, admin=admin)
        engine = self._local.get(run_id)
        if engine is not None:
            engine.cancel(f"cancelled by {user}")
        return stored

    @property
    def running_here(self) -> int:
        return len(self._local)

    async def aclose(self) -> None:
        """Stop the loop and this replica's runs; their leases lapse and another replica (or
        this one, restarted) retries them."""
        loop_task, self._loop_task = self._loop_task, None
        if loop_task is not None:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._db_threads.shutdown(wait=False, cancel_futures=True)


def _error_of(error: BaseException) -> dict[str, Any]:
    """A run's error as its record keeps it: a planforge error's name and message; anything
    else is a defect, logged here and shown without its details."""
    if isinstance(error, PlannerError):
        return {
            "error": str(error.context.get("error_type") or type(error).__name__),
            "message": error.message[:_TEXT_LIMIT],
            "input_error": isinstance(error, InvalidContext),
        }
    _log.error("run failed unexpectedly", error=repr(error)[:_TEXT_LIMIT])
    return {"error": "InternalError", "message": "the run failed; see the server's logs"}


def _planner_details(details: dict[str, Any]) -> dict[str, Any] | None:
    """What the run's record says of how it ran: planner, bucket configuration, worker
    (None when it ended before a planner was chosen)."""
    if not details.get("planner"):
        return None
    config = details.get("config") or {}
    return {
        "planner": str(details["planner"]),
        "planner_version": details.get("planner_version"),
        "config_id": config.get("id"),
        "config_version": config.get("version"),
        "config_digest": config.get("digest"),
        "worker": details.get("worker"),
    }
