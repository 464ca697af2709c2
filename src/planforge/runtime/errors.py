"""The runtime's errors: each says what happened to which user or run, and what to do."""

from __future__ import annotations

from planforge.errors import PlannerError, shown_value

__all__ = [
    "EngineBusy",
    "EngineClosed",
    "EventBusError",
    "InvalidContextError",
    "InvalidEventError",
    "RunCancelled",
    "RunLimitExceeded",
    "RunTimeout",
    "UserCapacityExceeded",
    "WorkerLost",
]


class InvalidContextError(PlannerError):
    """A context field (an id, the metadata, the nesting depth) is malformed."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        shown = shown_value(value)
        super().__init__(
            f"Invalid execution context: {field_name}={shown} {problem}.",
            where="context",
            context={"field": field_name},
        )
        self.field = field_name
        self.value = value
        self.problem = problem


class InvalidEventError(PlannerError):
    """An event (built in code or read back from JSON) has a malformed field."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        shown = shown_value(value)
        super().__init__(
            f"Invalid runtime event: {field_name}={shown} {problem}.",
            where="events",
            context={"field": field_name},
        )
        self.field = field_name
        self.problem = problem


class EventBusError(PlannerError):
    """The bus cannot do what was asked (closed, Redis unreachable, too many subscribers)."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message, where="event_bus", context=context)


class RunLimitExceeded(PlannerError):
    """A user already holds as many live engines as PLANFORGE_MAX_RUNS_PER_USER allows."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(
            f"User {user_id!r} already has {limit} live execution engine(s), the limit "
            f"(PLANFORGE_MAX_RUNS_PER_USER={limit}). Wait for a run to finish or clean an "
            "engine up before starting another.",
            where="runtime",
            context={"user_id": user_id, "limit": limit},
        )
        self.user_id = user_id
        self.limit = limit


class UserCapacityExceeded(PlannerError):
    """As many distinct users hold engines as PLANFORGE_MAX_USERS allows."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(
            f"Cannot start an engine for user {user_id!r}: {limit} users already have live "
            f"engines (PLANFORGE_MAX_USERS={limit}). Retry when runs finish, or raise "
            "PLANFORGE_MAX_USERS.",
            where="runtime",
            context={"user_id": user_id, "limit": limit},
        )
        self.user_id = user_id
        self.limit = limit


class RunTimeout(PlannerError):
    """A run did not finish within its timeout; its thread is abandoned, not killed."""

    def __init__(self, run_id: str, planner_name: str | None, timeout_s: float) -> None:
        who = f"planner {planner_name!r}" if planner_name else "planner selection"
        super().__init__(
            f"Run {run_id} timed out: {who} did not finish within {timeout_s:g} s. "
            "Pass a larger timeout_s or raise PLANFORGE_RUN_TIMEOUT_S.",
            where="runtime",
            context={"run_id": run_id, "planner_name": planner_name, "timeout_s": timeout_s},
        )
        self.run_id = run_id
        self.planner_name = planner_name
        self.timeout_s = timeout_s


class EngineClosed(PlannerError):
    """The engine was cleaned up (explicitly, by its scope or by the reaper)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"The execution engine of run {run_id} is cleaned up and cannot run again. "
            "Create a new one with ExecutionEngineFactory.create_for_user().",
            where="runtime",
            context={"run_id": run_id},
        )
        self.run_id = run_id


class EngineBusy(PlannerError):
    """An engine runs one plan at a time: its events carry a single run id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"The execution engine of run {run_id} is already running a plan (or a timed-out "
            "run's thread has not returned yet). Use one engine per concurrent run "
            "(create_for_user(context.child())).",
            where="runtime",
            context={"run_id": run_id},
        )
        self.run_id = run_id


class WorkerLost(PlannerError):
    """The worker process planning a run died (exit code, signal, memory limit); the run
    failed with that cause, and the server and every other run went on."""

    def __init__(self, run_id: str, planner_name: str, cause: str) -> None:
        super().__init__(
            f"Run {run_id}: the worker planning with {planner_name!r} died ({cause}). "
            "The planner crashed or exceeded the worker's memory limit "
            "(PLANFORGE_WORKER_MEMORY_MB); fix the planner or raise the limit.",
            where="worker",
            context={"run_id": run_id, "planner_name": planner_name, "cause": cause},
        )
        self.run_id = run_id
        self.planner_name = planner_name
        self.cause = cause


class RunCancelled(PlannerError):
    """A run was cancelled (by its owner or an admin) before it finished."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(
            f"Run {run_id} was cancelled: {reason}.",
            where="runtime",
            context={"run_id": run_id, "reason": reason},
        )
        self.run_id = run_id
        self.reason = reason
