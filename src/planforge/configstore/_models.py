"""The store's tables (SQLAlchemy 2 declarative); the Alembic revisions create exactly these.

Hot reads have their own index: a bucket's latest assignment is the last entry of
`ix_bucket_assignments_bucket_id`, and a name's active version is the single row of the
partial unique index `ux_planner_configs_active_name` (which also makes "one active version
per name" a database rule, not only a code path).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "NAME_LENGTH",
    "ApiUserRow",
    "AuditRow",
    "AuthEpochRow",
    "Base",
    "BucketAssignmentRow",
    "NameCounterRow",
    "PlannerConfigRow",
    "PresetRow",
    "PresetTagRow",
    "RunRow",
    "UTCDateTime",
]

NAME_LENGTH = 200
TITLE_LENGTH = 500
TAG_LENGTH = 100
ID_LENGTH = 128  # planforge.ids.MAX_ID_LENGTH: run, user and request ids
DIGEST_LENGTH = 64

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend.

    SQLite keeps no time zone, so values are stored as naive UTC (their text sorts in time
    order, which `bucket_at` relies on) and given back their UTC zone when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}; give an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PlannerConfigRow(Base):
    __tablename__ = "planner_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    title: Mapped[str] = mapped_column(String(TITLE_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    toml: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("planner_configs.id"))

    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index(
            "ux_planner_configs_active_name",
            "name",
            unique=True,
            sqlite_where=text("is_active = 1"),
            postgresql_where=text("is_active"),
        ),
        Index("ix_planner_configs_parent_id", "parent_id"),
    )


class NameCounterRow(Base):
    """The last version number handed out per name; writers lock this row to allocate."""

    __tablename__ = "config_name_counters"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)


class BucketAssignmentRow(Base):
    """Append-only: a bucket's current configuration is its assignment with the highest id."""

    __tablename__ = "bucket_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(NAME_LENGTH))
    config_id: Mapped[int] = mapped_column(ForeignKey("planner_configs.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_bucket_assignments_bucket_id", "bucket", "id"),
        Index("ix_bucket_assignments_bucket_assigned_at", "bucket", "assigned_at"),
        Index("ix_bucket_assignments_config_id", "config_id"),
    )


class BucketContextRow(Base):
    """The context a bucket is planned with by a batch (`planforge batch --buckets`): zlib of
    its canonical JSON, as the runs table keeps contexts; replaced, never versioned."""

    __tablename__ = "bucket_contexts"

    bucket: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    context_digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    context: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(NAME_LENGTH))


class PresetRow(Base):
    __tablename__ = "presets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text)
    toml: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PresetTagRow(Base):
    """One row per (preset, tag), so filtering by tag is an indexed lookup on every backend."""

    __tablename__ = "preset_tags"

    preset_id: Mapped[int] = mapped_column(
        ForeignKey("presets.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(TAG_LENGTH), primary_key=True)

    __table_args__ = (Index("ix_preset_tags_tag", "tag"),)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(100))
    entity_id: Mapped[str] = mapped_column(String(NAME_LENGTH))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApiUserRow(Base):
    """An API user; only the sha256 of its token is kept, so a leaked database leaks no token.

    A revoked user keeps its row (and the audit trail its id points to); `revoked_at` set means
    no token of it is accepted. `last_used_at` is approximate: servers write it at most once a
    minute per user.
    """

    __tablename__ = "api_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthEpochRow(Base):
    """A single row whose counter goes up in the transaction of every revocation and rotation.

    Servers that cache token lookups re-read it a few times a second and drop their cache when
    it moved, so a revoked token stops working everywhere without a query per request.
    """

    __tablename__ = "auth_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)


class RunRow(Base):
    """One plan run, from admission to its end; every replica of the service reads it here.

    `context` is zlib of the context's canonical JSON (`context_digest` is the sha256 of that
    JSON); `plan` and `error` are JSON text. `lease_owner` is the replica running it until
    `lease_expires_at`: a lease nobody renews lets another replica recover the run. The
    indexes serve the reads that must stay fast as the table grows: a user's or a bucket's
    runs newest first, the queue oldest first, expired leases, and pruning by age.
    """

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user: Mapped[str] = mapped_column(String(ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    objective: Mapped[str] = mapped_column(Text)
    planner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    planner_version: Mapped[str | None] = mapped_column(String(TAG_LENGTH))
    bucket: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    config_id: Mapped[int | None] = mapped_column(Integer)
    config_version: Mapped[int | None] = mapped_column(Integer)
    config_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    context_kind: Mapped[str | None] = mapped_column(String(TAG_LENGTH))
    context_digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    context: Mapped[bytes] = mapped_column(LargeBinary)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    plan: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_runs_user_created_at", "user", "created_at"),
        Index("ix_runs_bucket_created_at", "bucket", "created_at"),
        Index("ix_runs_status_created_at", "status", "created_at"),
        Index("ix_runs_status_lease_expires_at", "status", "lease_expires_at"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_finished_at", "finished_at"),
    )
