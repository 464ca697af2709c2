"""The runs table: plan runs from admission to their end, shared by every replica.

A run is `queued` when admitted, `running` once a replica claims it (with a lease it renews),
and ends `completed`, `failed`, `cancelled` or `interrupted`. Every transition is one
conditional UPDATE (`... WHERE status = 'queued'`, `... AND lease_owner = :owner`), so it is
atomic across threads, processes and machines: two replicas claiming one run get one winner,
and a replica whose lease was taken from it can no longer finish the run.

Lease times come from this process's clock (`clock`, injectable for tests); replicas are
expected to keep their clocks in sync (NTP), and leases should be much longer than any skew.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from planforge.configstore._audit import write_audit
from planforge.configstore._finished_runs import FinishedRun, insert_finished
from planforge.configstore._inputs import check_optional_text, check_text, findable, now
from planforge.configstore._models import DIGEST_LENGTH, NAME_LENGTH, TAG_LENGTH, RunRow
from planforge.configstore._run_records import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED_STATUSES,
    INTERRUPTED,
    QUEUED,
    RUN_STATUSES,
    RUNNING,
    StoredRun,
    encode_context,
    json_text,
)
from planforge.configstore._run_settings import (
    ENV_MAX_CONTEXT_BYTES,
    RunSettings,
    load_run_settings,
)
from planforge.configstore._run_sql import columns, prune_finished, recover_expired, stored_run
from planforge.configstore.errors import (
    InvalidInput,
    RunContextTooLarge,
    RunExists,
    RunFinished,
    RunNotFound,
    StoreError,
)
from planforge.ids import ID_RULE, id_problem
from planforge.logs import get_logger

if TYPE_CHECKING:
    from planforge.configstore._store import ConfigStore

__all__ = ["FAIL_STATUSES", "MAX_LEASE_S", "MAX_LIST_LIMIT", "RunStore"]

MAX_LIST_LIMIT: Final = 10_000
MAX_LEASE_S: Final = 7 * 24 * 3600.0
#: The statuses `RunStore.fail` may end a run with.
FAIL_STATUSES: Final = (FAILED, INTERRUPTED, CANCELLED)

Runs: TypeAlias = list[StoredRun]  # `RunStore.list` shadows the builtin inside the class

R = RunRow
_log = get_logger("configstore")


def _check_id(field: str, value: object) -> str:
    problem = id_problem(value)
    if problem is not None or not isinstance(value, str):
        raise InvalidInput(field, value, f"{problem}; an id is {ID_RULE}")
    return value


def _optional(field: str, value: object, limit: int) -> str | None:
    return None if value is None else check_text(field, value, limit)


def _check_seconds(field: str, value: object, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, value, "must be a number of seconds")
    if not math.isfinite(value) or not 0 < value <= limit:
        raise InvalidInput(field, value, f"must be above 0 and at most {limit:g} seconds")
    return float(value)


def _claimed(owner: str, lease_s: float | None, now: datetime) -> dict[str, Any]:
    """The columns of a run claimed by `owner` at `now` for `lease_s` seconds."""
    lease = _check_seconds("lease_s", lease_s, MAX_LEASE_S)
    return {
        "status": RUNNING,
        "attempts": 1,
        "started_at": now,
        "lease_owner": check_text("owner", owner, NAME_LENGTH),
        "lease_expires_at": now + timedelta(seconds=lease),
    }


def _planner_values(
    planner: str,
    planner_version: str | None = None,
    config_id: int | None = None,
    config_version: int | None = None,
    config_digest: str | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """The columns that say which planner, configuration version and worker ran a run."""
    values: dict[str, Any] = {
        "planner": check_text("planner", planner, NAME_LENGTH),
        "planner_version": _optional("planner_version", planner_version, TAG_LENGTH),
        **_check_config(config_id, config_version, config_digest),
    }
    if worker is not None:
        values["worker"] = check_text("worker", worker, NAME_LENGTH)
    return values


def _details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if not details:
        return {}
    unknown = sorted(set(details) - _DETAIL_KEYS)
    if unknown:
        raise InvalidInput("details", unknown, f"give only {', '.join(sorted(_DETAIL_KEYS))}")
    return _planner_values(**details)


_DETAIL_KEYS: Final = frozenset(
    ("planner", "planner_version", "config_id", "config_version", "config_digest", "worker")
)


def _check_count(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, value, f"must be an integer from {low} to {high}")
    return value


def _check_config(
    config_id: object, config_version: object, config_digest: object
) -> dict[str, Any]:
    for field, value in (("config_id", config_id), ("config_version", config_version)):
        if value is not None:
            _check_count(field, value, 1, 2**31 - 1)
    if config_digest is not None and not (
        isinstance(config_digest, str)
        and len(config_digest) == DIGEST_LENGTH
        and all(char in "0123456789abcdef" for char in config_digest)
    ):
        raise InvalidInput("config_digest", config_digest, "must be a sha256 hex digest")
    return {
        "config_id": config_id,
        "config_version": config_version,
        "config_digest": config_digest,
    }


class RunStore:
    """Plan runs in the configuration store's database; see the module docstring.

    Get one from `ConfigStore.runs`, or build one on a store with other `settings` or a
    `clock` (a function returning an aware UTC datetime). Every method runs in its own
    short transaction; it holds no state but its settings.
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        settings: RunSettings | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self._sessions = store._sessions
        self.settings = settings if settings is not None else load_run_settings()
        self._clock = clock

    # -- admission --------------------------------------------------------------------------

    def create(
        self,
        *,
        run_id: str,
        user: str,
        objective: str,
        context: dict[str, Any],
        request_id: str | None = None,
        planner: str | None = None,
        bucket: str | None = None,
        context_kind: str | None = None,
        timeout_s: float | None = None,
        owner: str | None = None,
        lease_s: float | None = None,
    ) -> StoredRun:
        """Record a new `queued` run (no attempt yet), or, given `owner` and `lease_s`, one
        already claimed by `owner` (as `claim` would, in the same transaction). A context
        larger than `settings.max_context_bytes` once compressed is refused and nothing is
        written; an id already recorded raises `RunExists`."""
        values: dict[str, Any] = {
            "run_id": _check_id("run_id", run_id),
            "user": _check_id("user", user),
            "request_id": None if request_id is None else _check_id("request_id", request_id),
            "objective": check_optional_text("objective", objective),
            "planner": _optional("planner", planner, NAME_LENGTH),
            "bucket": _optional("bucket", bucket, NAME_LENGTH),
            "context_kind": _optional("context_kind", context_kind, TAG_LENGTH),
            "timeout_s": None
            if timeout_s is None
            else _check_seconds("timeout_s", timeout_s, MAX_LEASE_S),
        }
        if values["objective"] is None:
            raise InvalidInput("objective", objective, "must be a string")
        blob, digest = encode_context(context)
        limit = self.settings.max_context_bytes
        if len(blob) > limit:
            raise RunContextTooLarge(len(blob), limit, ENV_MAX_CONTEXT_BYTES)
        created = self._clock()
        values.update(
            context=blob,
            context_digest=digest,
            status=QUEUED,
            attempts=0,
            cancel_requested=False,
            created_at=created,
        )
        if owner is not None:
            values.update(_claimed(owner, lease_s, created))
        try:
            with self._sessions.writing("record a run") as connection:
                if connection.execute(select(R.run_id).where(R.run_id == run_id)).first():
                    raise RunExists(run_id)
                connection.execute(insert(R).values(**values))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race for the id
                raise RunExists(run_id) from exc
            raise
        return self._new_record(values, len(blob))

    def record_finished(self, runs: Sequence[FinishedRun]) -> int:
        """Record runs that ran elsewhere and have ended (a batch's), in one transaction; the
        number written. Nothing is written if any is refused (a bad id, an id already
        recorded, a context over `settings.max_context_bytes`)."""
        limit = self.settings.max_context_bytes
        return insert_finished(self._sessions, runs, limit, ENV_MAX_CONTEXT_BYTES)

    @staticmethod
    def _new_record(values: dict[str, Any], context_bytes: int) -> StoredRun:
        data = {key: value for key, value in values.items() if key != "context"}
        unset = ("planner_version", "config_id", "config_version", "config_digest", "worker")
        moments = ("started_at", "finished_at", "lease_owner", "lease_expires_at")
        data.update(
            {key: None for key in unset + moments if key not in data}, context_bytes=context_bytes
        )
        return StoredRun(**data)

    # -- running ----------------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, lease_s: float) -> StoredRun | None:
        """Take a `queued` run: it becomes `running`, owned by `owner` for `lease_s` seconds
        (one more attempt). None when it was not queued (another replica took it, it was
        cancelled, or there is no such run)."""
        owner = check_text("owner", owner, NAME_LENGTH)
        lease = _check_seconds("lease_s", lease_s, MAX_LEASE_S)
        if id_problem(run_id) is not None:
            return None
        with self._sessions.writing("claim a run") as connection:
            row = connection.execute(self._claiming(owner, lease).where(R.run_id == run_id)).first()
        return None if row is None else stored_run(row)

    def claim_queued(self, owner: str, lease_s: float, limit: int) -> Runs:
        """Claim up to `limit` queued runs, oldest first, as `claim` does each one; runs
        another replica claims at the same moment are skipped, never taken twice."""
        owner = check_text("owner", owner, NAME_LENGTH)
        lease = _check_seconds("lease_s", lease_s, MAX_LEASE_S)
        _check_count("limit", limit, 1, MAX_LIST_LIMIT)
        oldest = (
            select(R.run_id)
            .where(R.status == QUEUED)
            .order_by(R.created_at, R.run_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._sessions.writing("claim queued runs") as connection:
            ids = list(connection.execute(oldest).scalars())
            if not ids:
                return []
            rows = connection.execute(self._claiming(owner, lease).where(R.run_id.in_(ids)))
            claimed = [stored_run(row) for row in rows]
        return sorted(claimed, key=lambda run: (run.created_at, run.run_id))

    def _claiming(self, owner: str, lease: float) -> Any:
        started = self._clock()
        return (
            update(R)
            .where(R.status == QUEUED)
            .values(
                status=RUNNING,
                attempts=R.attempts + 1,
                started_at=started,
                lease_owner=owner,
                lease_expires_at=started + timedelta(seconds=lease),
            )
            .returning(*columns(plan=False))
        )

    def renew(self, run_id: str, owner: str, lease_s: float) -> bool:
        """Extend `owner`'s lease to `lease_s` seconds from now; False when the run is no
        longer running under `owner` (it ended, or was recovered after the lease expired),
        which tells the runner to stop."""
        lease = _check_seconds("lease_s", lease_s, MAX_LEASE_S)
        expires = self._clock() + timedelta(seconds=lease)
        return self._change(run_id, owner, "renew a run's lease", lease_expires_at=expires)

    def record_planner(
        self,
        run_id: str,
        *,
        planner: str,
        planner_version: str | None = None,
        config_id: int | None = None,
        config_version: int | None = None,
        config_digest: str | None = None,
        worker: str | None = None,
    ) -> bool:
        """Record which planner (and bucket configuration version, and worker) runs the run;
        False when the run is unknown or already ended (an ended run is never rewritten)."""
        values = _planner_values(
            planner, planner_version, config_id, config_version, config_digest, worker
        )
        if id_problem(run_id) is not None:
            return False
        with self._sessions.writing("record a run's planner") as connection:
            result = connection.execute(
                update(R)
                .where(R.run_id == run_id, R.status.in_((QUEUED, RUNNING)))
                .values(**values)
            )
        return bool(result.rowcount)

    def complete(
        self,
        run_id: str,
        owner: str,
        plan: dict[str, Any],
        *,
        worker: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """End a run `owner` holds as `completed` with its plan; False (nothing written) when
        it is not running under `owner`, so a second completion of one run is refused.
        `details` takes `record_planner`'s keywords, written in the same transaction."""
        values: dict[str, Any] = {"plan": json_text(plan, "plan"), **_details(details)}
        if worker is not None:
            values["worker"] = check_text("worker", worker, NAME_LENGTH)
        return self._finish(run_id, owner, COMPLETED, "complete a run", values)

    def fail(
        self,
        run_id: str,
        owner: str,
        error: dict[str, Any],
        *,
        status: str = FAILED,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """End a run `owner` holds as `failed`, `interrupted` or `cancelled` with `error`
        (`{"error": type, "message": text, ...}`); False as for `complete`. `details` as
        for `complete`."""
        if status not in FAIL_STATUSES:
            raise InvalidInput("status", status, f"give one of {', '.join(FAIL_STATUSES)}")
        if not isinstance(error, dict) or not all(
            isinstance(error.get(key), str) for key in ("error", "message")
        ):
            raise InvalidInput("error", error, 'give {"error": type, "message": text, ...}')
        values = {"error": error, **_details(details)}
        return self._finish(run_id, owner, status, "record a run's failure", values)

    def _finish(
        self, run_id: str, owner: str, status: str, action: str, values: dict[str, Any]
    ) -> bool:
        if "error" in values:
            values["error"] = json_text(values["error"], "error")
        return self._change(
            run_id,
            owner,
            action,
            status=status,
            finished_at=self._clock(),
            lease_expires_at=None,
            **values,
        )

    def _change(self, run_id: str, owner: str, action: str, **values: Any) -> bool:
        """Apply `values` to `run_id` only while it runs under `owner`."""
        owner = check_text("owner", owner, NAME_LENGTH)
        if id_problem(run_id) is not None:
            return False
        with self._sessions.writing(action) as connection:
            result = connection.execute(
                update(R)
                .where(R.run_id == run_id, R.status == RUNNING, R.lease_owner == owner)
                .values(**values)
            )
        return bool(result.rowcount)

    # -- cancellation -----------------------------------------------------------------------

    def request_cancel(self, run_id: str, *, user: str, admin: bool = False) -> StoredRun:
        """Cancel `user`'s run (any run for an `admin`): a queued run is `cancelled` at once
        and never starts; a running one is marked `cancel_requested`, and its runner stops it
        and ends it with `fail(..., status="cancelled")`. Another user's run raises
        `RunNotFound`, as a missing one does; an ended run raises `RunFinished`."""
        user = check_text("user", user, NAME_LENGTH)
        if id_problem(run_id) is not None:
            raise RunNotFound(run_id)
        with self._sessions.writing("cancel a run") as connection:
            found = connection.execute(
                select(R.user, R.status).where(R.run_id == run_id).with_for_update()
            ).first()
            if found is None or (not admin and found.user != user):
                raise RunNotFound(run_id)
            if found.status in FINISHED_STATUSES:
                raise RunFinished(run_id, found.status)
            values: dict[str, Any] = {"cancel_requested": True}
            if found.status == QUEUED:
                error = {
                    "error": "RunCancelled",
                    "message": "The run was cancelled before it started.",
                    "cancelled_by": user,
                }
                values.update(
                    status=CANCELLED, finished_at=self._clock(), error=json_text(error, "error")
                )
            row = connection.execute(
                update(R).where(R.run_id == run_id).values(**values).returning(*columns())
            ).one()
            if admin and found.user != user:
                detail = {"owner": found.user, "status": found.status}
                write_audit(connection, user, "run.cancel", "run", run_id, detail)
        return stored_run(row)

    # -- reading ----------------------------------------------------------------------------

    def get(
        self, run_id: str, *, user: str | None = None, with_context: bool = False
    ) -> StoredRun | None:
        """The run with its plan (and its context, decompressed, when asked); None when
        there is no such run, or when `user` is given and the run is another user's."""
        if id_problem(run_id) is not None or (user is not None and not findable(user)):
            return None
        query = select(*columns(context=with_context)).where(R.run_id == run_id)
        if user is not None:
            query = query.where(R.user == user)
        with self._sessions.reading("read a run") as connection:
            row = connection.execute(query).first()
        return None if row is None else stored_run(row)

    def list(
        self,
        *,
        user: str | None = None,
        bucket: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> Runs:
        """Runs newest first (by creation), filtered; their plans and contexts are not read
        (`plan` and `context` are None: `get` one run for them)."""
        _check_count("limit", limit, 1, MAX_LIST_LIMIT)
        query = select(*columns(plan=False))
        if status is not None:
            if status not in RUN_STATUSES:
                raise InvalidInput("status", status, f"give one of {', '.join(RUN_STATUSES)}")
            query = query.where(R.status == status)
        if since is not None:
            if not isinstance(since, datetime) or since.tzinfo is None:
                raise InvalidInput("since", since, "give a time-zone aware datetime")
            query = query.where(R.created_at >= since)
        for column, value in ((R.user, user), (R.bucket, bucket)):
            if value is not None:
                if not findable(value):  # never stored (and PostgreSQL cannot compare a NUL)
                    return []
                query = query.where(column == value)
        query = query.order_by(R.created_at.desc(), R.run_id.desc()).limit(limit)
        with self._sessions.reading("list runs") as connection:
            return [stored_run(row) for row in connection.execute(query)]

    # -- upkeep -----------------------------------------------------------------------------

    def recover_expired(self, owner: str, *, max_attempts: int = 2) -> Runs:
        """Take back `running` runs whose lease expired (their replica or worker stopped):
        each is queued again, with the same id, while it has had fewer than `max_attempts`
        attempts, else ends `interrupted` with an error saying why (or `cancelled` when a
        cancellation was requested). Any replica may call it; each run is recovered once."""
        owner = check_text("owner", owner, NAME_LENGTH)
        _check_count("max_attempts", max_attempts, 1, 1000)
        with self._sessions.writing("recover expired runs") as connection:
            recovered = recover_expired(connection, owner, max_attempts, self._clock())
        for run in recovered:
            _log.warning(
                "run recovered after its lease expired",
                run_id=run.run_id,
                status=run.status,
                attempts=run.attempts,
                recovered_by=owner,
            )
        return recovered

    def prune(self) -> int:
        """Delete finished runs (completed, failed, cancelled, interrupted) that ended more
        than `max_age_days` ago, then each user's beyond its newest `max_per_user`, then
        any beyond the newest `max_total` in the table. Queued and running runs are never
        deleted (nor counted). The number of runs deleted."""
        with self._sessions.writing("prune finished runs") as connection:
            deleted = prune_finished(connection, self.settings, self._clock())
        if deleted:
            _log.info("finished runs pruned", deleted=deleted)
        return deleted
