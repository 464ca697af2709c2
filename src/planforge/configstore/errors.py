"""Errors of the configuration store; each names what was asked for and what to do next."""

from __future__ import annotations

from planforge.errors import PlannerError, shown_value
from planforge.holistic.errors import ConfigError

__all__ = [
    "BucketNotFound",
    "ConfigNotFound",
    "DocumentTooLarge",
    "ExportFormatError",
    "InvalidConfig",
    "InvalidInput",
    "PresetExists",
    "PresetNotFound",
    "RunContextTooLarge",
    "RunExists",
    "RunFinished",
    "RunNotFound",
    "StoreError",
    "UserExists",
    "UserNotFound",
    "VersionConflict",
]


class StoreError(PlannerError):
    """Root of the configuration store's errors (also raised when the database fails)."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message, where="configstore", context=context)


class ConfigNotFound(StoreError):
    """No configuration with this id, or no such version (or no version at all) of a name."""

    def __init__(
        self, config_id: int | None = None, *, name: str | None = None, version: int | None = None
    ) -> None:
        if config_id is not None:
            what = f"configuration id {config_id}"
            hint = "list ids with `planforge config history NAME`"
        elif version is not None:
            what = f"configuration {name!r} version {version}"
            hint = f"list its versions with `planforge config history {name}`"
        else:
            what = f"configuration {name!r}"
            hint = "create it with `planforge config create` or check the name"
        super().__init__(
            f"No {what} in the store; {hint}.", config_id=config_id, name=name, version=version
        )
        self.config_id = config_id
        self.name = name
        self.version = version


class VersionConflict(StoreError):
    """Compare-and-swap failed: someone else created a version since the caller read it."""

    def __init__(self, name: str, expected: int, current: int | None) -> None:
        shown = "none" if not current else f"v{current}"
        super().__init__(
            f"Configuration {name!r} changed: you expected v{expected} to be current but the "
            f"current version is {shown}. Review the current version, merge your change into "
            "it and retry with the new expected version.",
            name=name,
            expected=expected,
            current=current,
        )
        self.name = name
        self.expected = expected
        self.current = current


class BucketNotFound(StoreError):
    """The bucket has never been assigned a configuration."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"Bucket {bucket!r} has no configuration assigned; assign one with "
            f"`planforge bucket assign {bucket} CONFIG_ID`.",
            bucket=bucket,
        )
        self.bucket = bucket


class InvalidConfig(StoreError):
    """The TOML failed the holistic planner's validation; nothing was stored."""

    def __init__(self, error: ConfigError, *, name: str | None = None) -> None:
        subject = f"configuration {name!r}" if name else "the configuration"
        at = f" (at key {error.key})" if error.key else ""
        super().__init__(
            f"Rejected {subject}{at}: {error.message}. Nothing was stored; fix the document "
            "and try again.",
            name=name,
            key=error.key,
            line=error.line,
            column=error.column,
        )
        self.error = error
        self.key = error.key
        self.name = name


class DocumentTooLarge(StoreError):
    """A TOML document above the store's size bound; nothing was stored."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The document is {size} bytes, more than the {limit} bytes the store accepts; a "
            "planner configuration is a few kilobytes, check you passed the right file. "
            "Nothing was stored.",
            size=size,
            limit=limit,
        )
        self.size = size
        self.limit = limit


class InvalidInput(StoreError):
    """An argument the store cannot accept (an empty name, a rating outside 1..5, ...)."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(
            f"{field}={shown_value(value)} is not valid: {problem}. Nothing was changed.",
            field=field,
            value=shown_value(value),
        )
        self.field = field
        self.value = value
        self.problem = problem


class PresetNotFound(StoreError):
    def __init__(self, id_or_name: int | str) -> None:
        super().__init__(
            f"No preset {id_or_name!r}; list presets with `planforge preset list`.",
            preset=id_or_name,
        )
        self.preset = id_or_name


class PresetExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"A preset named {name!r} already exists; choose another name.", preset=name
        )
        self.name = name


class UserExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"An API user named {name!r} already exists; choose another name.", user=name
        )
        self.name = name


class UserNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"No API user named {name!r}; list users with `planforge user list`.", user=name
        )
        self.name = name


class ExportFormatError(StoreError):
    """An exported file whose header cannot be read, or an import missing a name or title."""

    def __init__(self, detail: str, *, line: int | None = None, source: str = "import") -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(
            f"{source}{where}: {detail}. Nothing was stored.", line=line, source=source
        )
        self.line = line
        self.source = source


class RunNotFound(StoreError):
    """No such run, or (for a caller who is not an admin) a run of another user."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"No run {shown_value(run_id)}; list runs with `planforge runs list`.", run_id=run_id
        )
        self.run_id = run_id


class RunExists(StoreError):
    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"A run with id {run_id!r} is already recorded; give each run a new id "
            "(`planforge.runtime.new_run_id()`). Nothing was stored.",
            run_id=run_id,
        )
        self.run_id = run_id


class RunFinished(StoreError):
    """A change (a cancellation) asked of a run that has already ended."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"Run {run_id!r} already ended ({status}); there is nothing to cancel.",
            run_id=run_id,
            status=status,
        )
        self.run_id = run_id
        self.status = status


class RunContextTooLarge(StoreError):
    """A run's context above the bound once compressed; nothing was stored."""

    def __init__(self, size: int, limit: int, setting: str) -> None:
        super().__init__(
            f"The run's context is {size} bytes compressed, more than the {limit} bytes a run "
            f"may keep; send a smaller context or raise {setting}. Nothing was stored.",
            size=size,
            limit=limit,
        )
        self.size = size
        self.limit = limit
        self.setting = setting
