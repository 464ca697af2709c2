"""Versioned planner configurations: history, buckets, rollback, presets, API users, plan
runs and an audit trail, on SQLite (embedded default) or PostgreSQL (`PLANFORGE_DATABASE_URL`)."""

from __future__ import annotations

from planforge.configstore._diff import config_label, parse_validated, semantic_diff, unified_diff
from planforge.configstore._finished_runs import FinishedRun
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
from planforge.configstore._run_records import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED_STATUSES,
    INTERRUPTED,
    QUEUED,
    RUN_STATUSES,
    RUNNING,
    RunStatus,
    StoredRun,
)
from planforge.configstore._run_settings import RunSettings, load_run_settings
from planforge.configstore._runs import RunStore
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
    RunContextTooLarge,
    RunExists,
    RunFinished,
    RunNotFound,
    StoreError,
    UserExists,
    UserNotFound,
    VersionConflict,
)

__all__ = [
    "BUCKET_PLANNER",
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINISHED_STATUSES",
    "INTERRUPTED",
    "MAX_DOCUMENT_BYTES",
    "QUEUED",
    "ROLES",
    "RUNNING",
    "RUN_STATUSES",
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
    "FinishedRun",
    "InvalidConfig",
    "InvalidInput",
    "Preset",
    "PresetExists",
    "PresetNotFound",
    "RunContextTooLarge",
    "RunExists",
    "RunFinished",
    "RunNotFound",
    "RunSettings",
    "RunStatus",
    "RunStore",
    "StoreError",
    "StoredRun",
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
    "load_run_settings",
    "parse_validated",
    "semantic_diff",
    "token_digest",
    "unified_diff",
]
