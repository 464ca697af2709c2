"""Versioned planner configurations: history, buckets, rollback, presets, API users and an
audit trail, on SQLite (embedded default) or PostgreSQL (`PLANFORGE_DATABASE_URL`)."""

from __future__ import annotations

from planforge.configstore.errors import (
    BucketNotFound,
    ConfigNotFound,
    DocumentTooLarge,
    InvalidConfig,
    InvalidInput,
    PresetExists,
    PresetNotFound,
    StoreError,
    UserExists,
    UserNotFound,
    VersionConflict,
)
from planforge.configstore.records import (
    AuditEntry,
    BucketAssignment,
    ConfigChange,
    ConfigVersion,
    CreateResult,
    Preset,
    User,
)
from planforge.configstore.store import MAX_DOCUMENT_BYTES, ConfigStore, content_digest

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "AuditEntry",
    "BucketAssignment",
    "BucketNotFound",
    "ConfigChange",
    "ConfigNotFound",
    "ConfigStore",
    "ConfigVersion",
    "CreateResult",
    "DocumentTooLarge",
    "InvalidConfig",
    "InvalidInput",
    "Preset",
    "PresetExists",
    "PresetNotFound",
    "StoreError",
    "User",
    "UserExists",
    "UserNotFound",
    "VersionConflict",
    "content_digest",
]
