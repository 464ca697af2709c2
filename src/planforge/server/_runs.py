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
import uuid
from typing import Any, Final

from planforge.configstore import ConfigStore
from planforge.contract import Plan
from planforge.errors import InvalidContext, PlannerError
from planforge.logs import get_logger
from planforge.runtime import ExecutionEngine, ExecutionEngineFactory, UserExecutionContext
from planforge.runtime.errors import RunCancelled, RunLimitExceeded, UserCapacityExceeded

__all__ = ["RunService", "replica_name"]

_log = get_logger("server.runs")
_TEXT_LIMIT: Final = 2000
_MAX_ATTEMPTS: Final = 2  # a run whose replica died is tried once more, then interrupted


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

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
            await asyncio.to_thread(
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
            )
            claimed = await asyncio.to_thread(
                self.store.runs.claim, context.run_id, self.replica, self.lease_s
            )
        except BaseException:
            self.engines.cleanup(engine)
            raise
        if claimed is None:  # cancelled between the two statements: nothing to run
            self.engines.cleanup(engine)
            return {"run_id": context.run_id, "status": "cancelled"}
        self._start(engine, claimed)
        return {"run_id": context.run_id, "status": "running"}

    def _start(self, engine: ExecutionEngine, stored: Any) -> None:
        self._local[engine.run_id] = engine
        task = asyncio.get_running_loop().create_task(
            self._execute(engine, stored), name=f"plan-{engine.run_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, engine: ExecutionEngine, stored: Any) -> None:
        run_id = engine.run_id
        try:
            context = stored.context
            if context is None:
                full = await asyncio.to_thread(self.store.runs.get, run_id, with_context=True)
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
            self.engines.cleanup(engine)

    async def _record(self, engine: ExecutionEngine, outcome: Plan | BaseException) -> None:
        """The run's outcome into its record, before its last event reaches the client."""
        runs, run_id = self.store.runs, engine.run_id
        details = engine.details
        if details.get("planner"):  # chosen before it ended: the record says which
            config = details.get("config") or {}
            await asyncio.to_thread(
                runs.record_planner,
                run_id,
                planner=str(details["planner"]),
                planner_version=details.get("planner_version"),
                config_id=config.get("id"),
                config_version=config.get("version"),
                config_digest=config.get("digest"),
                worker=details.get("worker"),
            )
        if isinstance(outcome, Plan):
            plan = outcome.model_dump(mode="json")
            await asyncio.to_thread(runs.complete, run_id, self.replica, plan)
            return
        status = "cancelled" if isinstance(outcome, RunCancelled) else "failed"
        await asyncio.to_thread(runs.fail, run_id, self.replica, _error_of(outcome), status=status)

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
        expired runs back to the queue, and claim queued runs this replica has room for."""
        runs = self.store.runs
        for run_id, engine in list(self._local.items()):
            await asyncio.to_thread(runs.renew, run_id, self.replica, self.lease_s)
            stored = await asyncio.to_thread(runs.get, run_id)
            if stored is not None and stored.cancel_requested:
                engine.cancel("cancelled by request")
        await asyncio.to_thread(runs.recover_expired, self.replica, max_attempts=_MAX_ATTEMPTS)
        room = self.engines.settings.workers * 2 - len(self._local)
        if room > 0:
            for stored in await asyncio.to_thread(
                runs.claim_queued, self.replica, self.lease_s, room
            ):
                self._take_up(stored)

    def _take_up(self, stored: Any) -> None:
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

    async def cancel(self, run_id: str, user: str, *, admin: bool) -> Any:
        """Cancel a run (its owner or an admin); a run executing here stops at once."""
        stored = await asyncio.to_thread(
            self.store.runs.request_cancel, run_id, user=user, admin=admin
        )
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
