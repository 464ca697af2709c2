"""Buckets: which configuration each bucket runs, with every assignment kept as history.

An assignment or rollback adds a row (never changes one) and its audit row in the same
transaction; subscribers hear of it after the commit. The newest row is what a bucket runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select

from planforge.configstore._audit import write_audit
from planforge.configstore._inputs import (
    check_optional_text,
    check_text,
    findable,
    now,
    storable_id,
)
from planforge.configstore._models import NAME_LENGTH, BucketAssignmentRow, PlannerConfigRow
from planforge.configstore._records import BucketAssignment, ConfigChange, ConfigVersion
from planforge.configstore._versions import (
    CONFIG_BY_ID,
    CONFIG_COLUMNS,
    VERSION_BY_NAME,
    config_record,
)
from planforge.configstore.errors import BucketNotFound, ConfigNotFound, InvalidInput
from planforge.logs import get_logger

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions
    from planforge.configstore._subscribers import Subscribers

__all__ = ["Buckets"]

_log = get_logger("configstore")

C = PlannerConfigRow
A = BucketAssignmentRow

# In `BucketAssignment`'s field order, so a row of them is the record's arguments.
_ASSIGNMENT_COLUMNS = (
    A.id,
    A.bucket,
    A.config_id,
    C.name,
    C.version,
    A.assigned_at,
    A.assigned_by,
    A.reason,
)
# The hot read, built once (SQLAlchemy then reuses its compiled form from its cache).
_BUCKET_CONFIG = (
    select(*CONFIG_COLUMNS)
    .join_from(A, C, A.config_id == C.id)
    .where(A.bucket == bindparam("bucket"))
    .order_by(A.id.desc())
    .limit(1)
)
_INSERT_ASSIGNMENT = insert(A).returning(A.id)


def _assignment(row: Any) -> BucketAssignment:
    return BucketAssignment(*row)


class Buckets:
    """Assigns configurations to buckets and reads what they run and ran."""

    def __init__(self, sessions: Sessions, subscribers: Subscribers) -> None:
        self._sessions = sessions
        self._subscribers = subscribers

    def assign(
        self, bucket: str, config_id: int, assigned_by: str, reason: str | None
    ) -> BucketAssignment:
        """See `ConfigStore.assign_config_to_bucket`."""
        check_text("bucket", bucket, NAME_LENGTH)
        check_text("assigned_by", assigned_by, NAME_LENGTH)
        reason = check_optional_text("reason", reason)
        if not storable_id(config_id):
            raise ConfigNotFound(config_id)
        with self._sessions.writing("assign a configuration to a bucket") as connection:
            row = connection.execute(CONFIG_BY_ID, {"config_id": config_id}).first()
            if row is None:
                raise ConfigNotFound(config_id)
            config = config_record(row)
            assignment = _insert(connection, bucket, config, assigned_by, reason, "bucket.assign")
        self._announce(assignment, config)
        return assignment

    def rollback(
        self, bucket: str, name: str, version: int, assigned_by: str, reason: str | None
    ) -> BucketAssignment:
        """See `ConfigStore.rollback_to_version`."""
        check_text("bucket", bucket, NAME_LENGTH)
        check_text("assigned_by", assigned_by, NAME_LENGTH)
        reason = check_optional_text("reason", reason)
        if not findable(name):
            raise ConfigNotFound(name=name, version=version)
        note = f"rollback to {name} v{version}" + (f": {reason}" if reason else "")
        with self._sessions.writing("roll a bucket back") as connection:
            if connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first() is None:
                raise BucketNotFound(bucket)
            row = connection.execute(VERSION_BY_NAME, {"name": name, "version": version}).first()
            if row is None:
                raise ConfigNotFound(name=name, version=version)
            config = config_record(row)
            assignment = _insert(connection, bucket, config, assigned_by, note, "bucket.rollback")
        self._announce(assignment, config)
        return assignment

    def _announce(self, assignment: BucketAssignment, config: ConfigVersion) -> None:
        _log.info(
            "bucket assigned",
            bucket=assignment.bucket,
            config_id=config.id,
            name=config.name,
            version=config.version,
        )
        self._subscribers.emit(
            ConfigChange(
                "bucket_assigned",
                config.name,
                config.id,
                config.digest,
                bucket=assignment.bucket,
                version=config.version,
            )
        )

    def config(self, bucket: str) -> ConfigVersion:
        """The configuration `bucket` runs now: one indexed query."""
        if not findable(bucket):
            raise BucketNotFound(bucket)
        with self._sessions.reading("read a bucket's configuration") as connection:
            row = connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first()
        if row is None:
            raise BucketNotFound(bucket)
        return config_record(row)

    def history(self, bucket: str) -> list[BucketAssignment]:
        if not findable(bucket):
            return []
        with self._sessions.reading("read a bucket's history") as connection:
            rows = connection.execute(
                select(*_ASSIGNMENT_COLUMNS)
                .join_from(A, C, A.config_id == C.id)
                .where(A.bucket == bucket)
                .order_by(A.id)
            ).all()
        return [_assignment(row) for row in rows]

    def at(self, bucket: str, when: datetime) -> BucketAssignment | None:
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidInput(
                "when", when, "give a time-zone aware datetime, e.g. datetime.now(UTC)"
            )
        if not findable(bucket):
            return None
        with self._sessions.reading("read a bucket's history") as connection:
            row = connection.execute(
                select(*_ASSIGNMENT_COLUMNS)
                .join_from(A, C, A.config_id == C.id)
                .where(A.bucket == bucket, A.assigned_at <= when)
                .order_by(A.assigned_at.desc(), A.id.desc())
                .limit(1)
            ).first()
        return _assignment(row) if row is not None else None

    def names(self) -> list[str]:
        with self._sessions.reading("list buckets") as connection:
            return list(
                connection.execute(select(A.bucket).distinct().order_by(A.bucket)).scalars()
            )


def _insert(
    connection: Connection,
    bucket: str,
    config: ConfigVersion,
    actor: str,
    reason: str | None,
    action: str,
) -> BucketAssignment:
    """Inside the write transaction: the new assignment row and its audit row."""
    previous = connection.execute(_BUCKET_CONFIG, {"bucket": bucket}).first()
    assigned_at = now()
    assignment_id = connection.execute(
        _INSERT_ASSIGNMENT,
        {
            "bucket": bucket,
            "config_id": config.id,
            "assigned_at": assigned_at,
            "assigned_by": actor,
            "reason": reason,
        },
    ).scalar_one()
    write_audit(
        connection,
        actor,
        action,
        "bucket",
        bucket,
        {
            "assignment_id": assignment_id,
            "config_id": config.id,
            "name": config.name,
            "version": config.version,
            "previous_config_id": previous.id if previous is not None else None,
            "reason": reason,
        },
    )
    return BucketAssignment(
        id=assignment_id,
        bucket=bucket,
        config_id=config.id,
        config_name=config.name,
        config_version=config.version,
        assigned_at=assigned_at,
        assigned_by=actor,
        reason=reason,
    )
