"""The `ray` executor: runs plan as tasks on a Ray cluster, past one machine.

The server connects to an existing cluster (`PLANFORGE_RAY_ADDRESS`; it never starts one) and
submits each run as a task of one CPU. The task, in a Ray worker process on any node, builds
the factory from the server's recipe once per worker process and plans with a `JobRunner`, as
a `process` worker does; it returns plain data, `("done", JobOutcome)` or `("failed", wire)`,
never a raised planner error.

A worker on another machine has no pipe to the server, so run-protocol events travel through
Redis (`PLANFORGE_REDIS_URL`): the task appends each event to a per-run list, capped and
expiring, and the server drains it in order while it waits and once more after the task ends.

A worker that dies is retried once (the same run id: a run is idempotent); a second death
fails the run with `WorkerLost` and Ray's cause. A run's deadline or cancellation cancels its
task with force, which kills the worker process doing the work, not only the wait.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
import time
from collections import OrderedDict
from importlib.util import find_spec
from typing import Any, Final

from planforge.contract import Run, RunEvent
from planforge.errors import PlannerError, RunStopped
from planforge.logs import get_logger
from planforge.redact import redact_text
from planforge.runtime._jobs import JobFailure, JobOutcome, JobRunner, RunJob
from planforge.runtime._settings import RuntimeSettings
from planforge.runtime.errors import WorkerLost

__all__ = ["RayExecutor", "events_key"]

NAMESPACE: Final = "planforge"
MAX_RETRIES: Final = 1  # a worker that dies is retried once, then the run fails as lost
_POLL_S: Final = 0.05  # how often a waiting run drains its events and checks its deadline
_STOP_GRACE_S: Final = 5.0  # how long a cancelled task gets to be killed before we go on
_EVENTS_CAP: Final = 10_000  # the newest events a run's list keeps if the server falls behind
_EVENTS_TTL_S: Final = 3600  # a run's list expires this long after its last event
_CAUSE_LIMIT: Final = 300
_RUNNERS_KEPT: Final = 4  # factories a worker process keeps (one per recipe it has seen)
_log = get_logger("runtime.ray")


def events_key(run_id: str) -> str:
    """The Redis list where a run's task appends its events."""
    return f"planforge:run-events:{run_id}"


def _cut(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= _CAUSE_LIMIT else first[: _CAUSE_LIMIT - 3] + "..."


# -- the worker's side: runs in a Ray worker process -------------------------------------

_runners: OrderedDict[str, JobRunner] = OrderedDict()
_clients: dict[str, Any] = {}
_worker_lock = threading.Lock()


def _runner(recipe: dict[str, Any], recipe_key: str, max_stateful: int) -> JobRunner:
    """This worker process's runner for `recipe`, built on first use and kept."""
    with _worker_lock:
        runner = _runners.get(recipe_key)
        if runner is not None:
            _runners.move_to_end(recipe_key)
            return runner
        import ray

        from planforge.factory import PlannerFactory

        node = ray.get_runtime_context().get_node_id()[:12]
        runner = JobRunner(PlannerFactory(**recipe), f"ray:{node}:{os.getpid()}", max_stateful)
        _runners[recipe_key] = runner
        while len(_runners) > _RUNNERS_KEPT:
            _runners.popitem(last=False)[1].factory.close()
        return runner


def _redis_client(url: str) -> Any:
    with _worker_lock:
        client = _clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
            _clients.clear()  # one Redis per worker process: the server's
            _clients[url] = client
        return client


class _EventPublisher:
    """A run's event sink in the worker: each event appended to the run's Redis list.

    Redis being unreachable costs the events, never the plan: they are counted and logged.
    """

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.key = events_key(run_id)
        self.run_id = run_id
        self.dropped = 0

    def __call__(self, event: RunEvent) -> None:
        data = json.dumps({"type": event.type, "payload": dict(event.payload)}, default=str)
        try:
            pipe = self.client.pipeline(transaction=True)  # the cap and expiry go with each push
            pipe.rpush(self.key, data)
            pipe.ltrim(self.key, -_EVENTS_CAP, -1)
            pipe.expire(self.key, _EVENTS_TTL_S)
            pipe.execute()
        except Exception as exc:  # redis.RedisError and socket errors alike
            self.dropped += 1
            if self.dropped == 1:
                _log.warning(
                    "run events not published", run_id=self.run_id, error=type(exc).__name__
                )


def plan_task(
    recipe: dict[str, Any], recipe_key: str, job: RunJob, redis_url: str | None, max_stateful: int
) -> tuple[str, Any]:
    """The Ray task: plan `job` in this worker process; planner failures come back as data.

    Without `redis_url` (an executor made with `events=False`) the run's events are dropped.
    """
    runner = _runner(recipe, recipe_key, max_stateful)
    sink = None if redis_url is None else _EventPublisher(_redis_client(redis_url), job.run_id)
    run = Run(job.run_id, config=job.config, timeout_s=job.timeout_s, sink=sink)
    try:
        outcome = runner.run(job, run)
    except JobFailure as failure:
        return ("failed", failure.to_wire())
    return ("done", outcome)


# -- the server's side -------------------------------------------------------------------


def _required(value: str | None, variable: str, why: str) -> str:
    if value is None or not value.strip():
        raise PlannerError(
            f"The ray executor needs {variable}: {why}. Set it, or choose another executor "
            "with PLANFORGE_EXECUTOR=process.",
            where="executor",
            context={"variable": variable},
        )
    return value.strip()


class RayExecutor:
    """Runs plan as Ray tasks on the cluster at `settings.ray_address`; events via Redis.

    `events=False` (batch planning, where nobody follows a run's stream) needs no Redis: the
    tasks publish nothing and the waits drain nothing.
    """

    name = "ray"

    def __init__(
        self, recipe: dict[str, Any], settings: RuntimeSettings, *, events: bool = True
    ) -> None:
        self._address = _required(
            settings.ray_address,
            "PLANFORGE_RAY_ADDRESS",
            "the address of the Ray cluster's head (host:port, or ray://host:port)",
        )
        if self._address in ("auto", "local"):
            raise PlannerError(
                f"PLANFORGE_RAY_ADDRESS={self._address!r} is not allowed: the server connects "
                "to a running cluster by its head's address (host:port) and never starts one.",
                where="executor",
                context={"variable": "PLANFORGE_RAY_ADDRESS"},
            )
        self._redis_url: str | None = None
        if events:
            self._redis_url = _required(
                settings.redis_url,
                "PLANFORGE_REDIS_URL",
                "run events travel from workers on other machines through Redis",
            )
        if find_spec("ray") is None:
            raise PlannerError(
                "The ray executor needs the ray package: pip install 'planforge[ray]'.",
                where="executor",
            )
        self._recipe = recipe
        self._recipe_key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
        self._max_stateful = settings.max_users
        self._max_calls = settings.worker_max_runs
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._task: Any = None
        self._recipe_ref: Any = None
        self._redis: Any = None
        self._connected_here = False
        self._closed = False
        self.submitted = 0
        self.lost = 0
        self.stopped = 0

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the cluster (once); the server never starts a cluster of its own."""
        with self._lock:
            if self._task is not None:
                return
            if self._closed:
                raise PlannerError("The ray executor is closed.", where="executor")
            import logging

            import ray

            if not ray.is_initialized():
                try:  # WARNING keeps Ray's own "connecting to <address>" line out of the logs
                    ray.init(
                        address=self._address,
                        namespace=NAMESPACE,
                        ignore_reinit_error=True,
                        log_to_driver=False,
                        logging_level=logging.WARNING,
                    )
                except Exception as exc:
                    raise self._unreachable(exc) from None
                self._connected_here = True
            self._recipe_ref = ray.put(self._recipe)
            if self._redis_url is not None:
                import redis

                self._redis = redis.Redis.from_url(
                    self._redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
                )
            self._task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, max_calls=self._max_calls)(
                plan_task
            )

    def _unreachable(self, exc: Exception) -> PlannerError:
        cause = redact_text(_cut(str(exc)).replace(self._address, "<PLANFORGE_RAY_ADDRESS>"))
        return PlannerError(
            f"Could not connect to the Ray cluster at PLANFORGE_RAY_ADDRESS "
            f"({type(exc).__name__}: {cause}). Check that the head is running and reachable "
            "from this machine, and that Ray's version here matches the cluster's.",
            where="executor",
            context={"variable": "PLANFORGE_RAY_ADDRESS"},
        )

    def close(self) -> None:
        """Cancel the tasks still running and disconnect, if this executor connected."""
        import ray

        with self._lock:
            self._closed = True
            running = list(self._running)
            connected, self._connected_here = self._connected_here, False
        for ref in running:
            _cancel(ref)
        deadline = time.monotonic() + _STOP_GRACE_S
        while self._running and time.monotonic() < deadline:  # the waits see `_closed`
            time.sleep(_POLL_S)
        with self._lock:
            client, self._redis = self._redis, None
        if client is not None:
            client.close()
        if connected and ray.is_initialized():
            ray.shutdown()

    def cluster_cpus(self) -> int:
        """The CPUs the cluster offers now (connecting first): how many tasks run at once."""
        self.start()
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return max(1, int(resources.get("CPU", 1)))

    def describe(self) -> dict[str, Any]:
        return {
            "executor": self.name,
            "connected": self._task is not None and not self._closed,
            "namespace": NAMESPACE,
            "submitted": self.submitted,
            "running": len(self._running),
            "lost": self.lost,
            "stopped": self.stopped,
            "max_retries": MAX_RETRIES,
        }

    # -- one run -----------------------------------------------------------------------

    def execute(self, job: RunJob, run: Run) -> JobOutcome:
        """Submit `job` as a task and wait for it, passing its events on to `run` in order."""
        if self._closed:
            raise JobFailure(RunStopped(job.run_id, "the executor was closed"), "stopped")
        try:
            self.start()
        except PlannerError as exc:  # no cluster: the run never planned
            raise JobFailure(exc, "load") from None
        started = time.perf_counter()
        ref = self._task.remote(
            self._recipe_ref, self._recipe_key, job, self._redis_url, self._max_stateful
        )
        with self._lock:
            self.submitted += 1
            self._running.add(ref)
        key = events_key(job.run_id)
        try:
            self._wait(ref, job, run, started)
            self._drain(key, run)  # the task has ended: every event it published is there
            result = self._result(ref, job, started)
        finally:
            with self._lock:
                self._running.discard(ref)
            self._forget(key)
        kind, payload = result
        if kind == "done":
            outcome: JobOutcome = payload
            return outcome
        raise JobFailure.from_wire(payload)

    def _wait(self, ref: Any, job: RunJob, run: Run, started: float) -> None:
        """Until the task ends; a deadline, a cancel or `close` kills the task's worker."""
        import ray

        key = events_key(job.run_id)
        while True:
            ready, _ = ray.wait([ref], timeout=_POLL_S)
            if ready:
                return
            self._drain(key, run)
            try:
                if self._closed:
                    raise RunStopped(job.run_id, "the executor was closed")
                run.check()
            except RunStopped as stop:
                _cancel(ref)
                ray.wait([ref], timeout=_STOP_GRACE_S)  # let the kill land before we go on
                self._count("stopped")
                raise JobFailure(stop, "stopped", time.perf_counter() - started, "ray") from None

    def _result(self, ref: Any, job: RunJob, started: float) -> tuple[str, Any]:
        """The task's answer, or the `JobFailure` that Ray's error means."""
        import ray
        from ray import exceptions as rex

        try:
            result: tuple[str, Any] = ray.get(ref)
            return result
        except rex.TaskCancelledError:
            self._count("stopped")
            stop = RunStopped(job.run_id, "its Ray task was cancelled")
            raise JobFailure(stop, "stopped", time.perf_counter() - started, "ray") from None
        except rex.RayTaskError as exc:  # the task itself failed, outside the planner
            cause = f"{type(exc.cause).__name__}: {_cut(str(exc.cause))}"
            _log.warning("ray task failed", run_id=job.run_id, planner=job.planner, cause=cause)
            error = PlannerError(
                f"Run {job.run_id}: the Ray task could not plan with {job.planner!r} ({cause}). "
                "Install the same planforge and plugin packages on every Ray node.",
                where="worker",
                context={"run_id": job.run_id, "planner_name": job.planner},
            )
            raise JobFailure(error, "load", None, "ray") from None
        except rex.RayError as exc:  # the worker (or its node) died on every attempt
            self._count("lost")
            cause = f"{type(exc).__name__} on {MAX_RETRIES + 1} attempts: {_cut(str(exc))}"
            _log.warning("ray worker lost", run_id=job.run_id, planner=job.planner, cause=cause)
            error = WorkerLost(job.run_id, job.planner, cause)
            raise JobFailure(error, "lost", time.perf_counter() - started, "ray") from None

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def _drain(self, key: str, run: Run) -> None:
        """Emit the events published so far, in order; a Redis hiccup costs only events."""
        client = self._redis
        if client is None:
            return
        try:
            pipe = client.pipeline(transaction=True)
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            items, _ = pipe.execute()
        except Exception as exc:  # redis.RedisError and socket errors alike
            _log.warning("run events not read", run_id=run.run_id, error=type(exc).__name__)
            return
        for raw in items:
            try:
                data = json.loads(raw)
                kind, payload = str(data["type"]), data.get("payload")
            except (ValueError, KeyError, TypeError):
                continue  # not ours: nothing a planner sent looks like this
            run.emit(kind, payload if isinstance(payload, dict) else None)

    def _forget(self, key: str) -> None:
        client = self._redis
        if client is None:
            return
        try:
            client.delete(key)
        except Exception as exc:  # the list expires by itself
            _log.warning("run events not cleared", error=type(exc).__name__)


def _cancel(ref: Any) -> None:
    """Cancel a task with force: Ray kills the worker process running it."""
    import ray

    try:
        ray.cancel(ref, force=True)
    except Exception as exc:  # already finished, or the connection went first
        _log.info("ray task not cancelled", error=type(exc).__name__)
