"""What the store hands out: plain frozen records, detached from any database session.

Callers keep them as long as they like and share them between threads; a record never
changes under its holder and never triggers a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "AuditEntry",
    "BucketAssignment",
    "ChangeKind",
    "ConfigChange",
    "ConfigVersion",
    "CreateResult",
    "Preset",
    "User",
]

ChangeKind = Literal["version_created", "bucket_assigned"]


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One version of a named configuration; `digest` is the sha256 of `toml` as stored."""

    id: int
    name: str
    title: str
    description: str | None
    toml: str
    digest: str
    version: int
    active: bool
    created_at: datetime
    created_by: str
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class BucketAssignment:
    """One entry of a bucket's history: from `assigned_at` on, the bucket ran `config_id`."""

    id: int
    bucket: str
    config_id: int
    config_name: str
    config_version: int
    assigned_at: datetime
    assigned_by: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Preset:
    """A shared starting point; `rating` is the mean of `ratings` votes (None before any)."""

    id: int
    name: str
    description: str
    toml: str
    author: str
    tags: tuple[str, ...]
    downloads: int
    rating: float | None
    ratings: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateResult:
    """`created` is False when the content equaled the active version's (nothing was stored)."""

    config: ConfigVersion
    created: bool


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """Sent to subscribers after a change is committed.

    `name` is the configuration's name; `bucket` is set for `bucket_assigned` (assignments and
    rollbacks) and None for `version_created`.
    """

    kind: ChangeKind
    name: str
    config_id: int
    digest: str
    bucket: str | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class User:
    """An API user: `role` is viewer, operator or admin (each may do what the previous may).

    A revoked user (`revoked_at` set) is kept for the audit trail and holds no working token
    until its token is rotated. `last_used_at` is approximate (written at most once a minute)
    and None before the first use.
    """

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def status(self) -> Literal["active", "revoked"]:
        return "active" if self.revoked_at is None else "revoked"
