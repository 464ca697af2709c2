"""Versioned planner configurations: history, buckets, rollback, presets, API users and an
audit trail, on SQLite (embedded default) or PostgreSQL (`PLANFORGE_DATABASE_URL`)."""

from __future__ import annotations

from planforge.configstore.errors import (
    BucketNotFound,
    ConfigNotFound,
    DocumentTooLarge,
    ExportFormatError,
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
from planforge.configstore.store import (
    MAX_DOCUMENT_BYTES,
    ConfigStore,
    Subscriber,
    content_digest,
)

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
    "ExportFormatError",
    "InvalidConfig",
    "InvalidInput",
    "Preset",
    "PresetExists",
    "PresetNotFound",
    "StoreError",
    "Subscriber",
    "User",
    "UserExists",
    "UserNotFound",
    "VersionConflict",
    "content_digest",
]
