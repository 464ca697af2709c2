"""Versioned planner configurations: history, buckets, rollback, presets, API users and an
audit trail, on SQLite (embedded default) or PostgreSQL (`PLANFORGE_DATABASE_URL`)."""

from __future__ import annotations

from planforge.configstore._diff import config_label, parse_validated, semantic_diff, unified_diff
from planforge.configstore._planner_cache import BucketPlannerCache
from planforge.configstore._records import (
    AuditEntry,
    BucketAssignment,
    ConfigChange,
    ConfigVersion,
    CreateResult,
    Preset,
    User,
)
from planforge.configstore._store import (
    MAX_DOCUMENT_BYTES,
    ConfigStore,
    Subscriber,
    content_digest,
)
from planforge.configstore._transfer import (
    clone_config,
    default_actor,
    export_config,
    import_config,
)
from planforge.configstore._users import ROLES, TOUCH_INTERVAL_S, check_new_user, token_digest
from planforge.configstore._validator import BUCKET_PLANNER
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

__all__ = [
    "BUCKET_PLANNER",
    "MAX_DOCUMENT_BYTES",
    "ROLES",
    "TOUCH_INTERVAL_S",
    "AuditEntry",
    "BucketAssignment",
    "BucketNotFound",
    "BucketPlannerCache",
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
    "check_new_user",
    "clone_config",
    "config_label",
    "content_digest",
    "default_actor",
    "export_config",
    "import_config",
    "parse_validated",
    "semantic_diff",
    "token_digest",
    "unified_diff",
]
