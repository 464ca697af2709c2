"""All of planforge's factory knobs in one pydantic-settings class.

Environment names follow the original factory (`FACTORY_*`, `ALLOWED_PLANNERS`). Settings are
read when asked for, never at import, and a malformed value is a `SettingsError` naming the
variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from planforge.errors import SettingsError

_Settings = TypeVar("_Settings", bound=BaseSettings)

__all__ = ["FactorySettings", "build_settings", "factory_setting", "load_settings"]

CommaList = Annotated[tuple[str, ...], NoDecode]
PathList = Annotated[tuple[Path, ...], NoDecode]


def _env(name: str, default: Any, **constraints: Any) -> Any:
    return Field(default, validation_alias=name, **constraints)


class FactorySettings(BaseSettings):
    """Factory settings; each field's environment variable is its alias."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, case_sensitive=True
    )

    # selection
    min_reliability: float = _env("FACTORY_MIN_RELIABILITY", 0.25, ge=0.0, le=1.0)
    default_reliability: float = _env("FACTORY_DEFAULT_RELIABILITY", 0.1, ge=0.0, le=1.0)
    reliability_half_life_s: float = _env("FACTORY_RELIABILITY_HALF_LIFE_S", 900.0, gt=0.0)
    reliability_prior_weight: float = _env("FACTORY_RELIABILITY_PRIOR_WEIGHT", 2.0, gt=0.0)
    objective_weight: float = _env("FACTORY_OBJECTIVE_WEIGHT", 0.2, ge=0.0, le=10.0)
    deep_index_cap_boost: float = _env("FACTORY_DEEP_INDEX_CAP_BOOST", 0.05, ge=0.0, le=1.0)
    hotspot_cap_boost: float = _env("FACTORY_HOTSPOT_CAP_BOOST", 0.03, ge=0.0, le=1.0)
    hotspot_threshold: int = _env("FACTORY_HOTSPOT_THRESHOLD", 8, ge=0)
    allowed_planners: CommaList = _env("ALLOWED_PLANNERS", ())
    exclude_planners: CommaList = _env("FACTORY_EXCLUDE_PLANNERS", ())

    # discovery
    plugin_dirs: PathList = _env("FACTORY_PLUGIN_DIRS", ())
    cache_dir: Path | None = _env("FACTORY_CACHE_DIR", None)
    state_dir: Path | None = _env("FACTORY_STATE_DIR", None)
    deep_fingerprint: bool = _env("FACTORY_DEEP_FINGERPRINT", True)
    force_rediscover: bool = _env("FACTORY_FORCE_REDISCOVER", False)

    # sandbox
    sandbox: bool = _env("FACTORY_SANDBOX", True)
    sandbox_timeout_s: float = _env("FACTORY_SANDBOX_TIMEOUT_S", 2.0, gt=0.0, le=600.0)
    sandbox_max_memory_mb: int = _env("FACTORY_SANDBOX_MAX_MEMORY_MB", 1024, ge=64)
    sandbox_max_output_bytes: int = _env("FACTORY_SANDBOX_MAX_OUTPUT_BYTES", 65536, ge=1024)

    # resilience
    self_heal_on_empty: bool = _env("FACTORY_SELF_HEAL_ON_EMPTY", False)
    self_heal_blocking: bool = _env("FACTORY_SELF_HEAL_BLOCKING", True)
    self_heal_cooldown_s: float = _env("FACTORY_SELF_HEAL_COOLDOWN_S", 5.0, ge=0.0)
    breaker_window: int = _env("FACTORY_BREAKER_WINDOW", 20, ge=1, le=10_000)
    breaker_min_calls: int = _env("FACTORY_BREAKER_MIN_CALLS", 5, ge=1)
    breaker_failure_rate: float = _env("FACTORY_BREAKER_FAILURE_RATE", 0.5, gt=0.0, le=1.0)
    breaker_open_s: float = _env("FACTORY_BREAKER_OPEN_S", 30.0, gt=0.0)

    # telemetry
    max_profiles: int = _env("FACTORY_MAX_PROFILES", 1000, ge=1, le=1_000_000)
    stats_window: int = _env("FACTORY_STATS_WINDOW", 512, ge=1, le=1_000_000)
    profile_selection: bool = _env("FACTORY_PROFILE_SELECTION", True)
    profile_instantiation: bool = _env("FACTORY_PROFILE_INSTANTIATION", True)
    log_level: str = _env("FACTORY_LOG_LEVEL", "INFO")

    @field_validator("allowed_planners", "exclude_planners", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(sorted({part.strip() for part in value.split(",") if part.strip()}))
        return value

    @field_validator("plugin_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
                raise ValueError("use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
            return level
        return value


def build_settings(settings_class: type[_Settings], overrides: dict[str, Any]) -> _Settings:
    """`settings_class` read from the environment, with keyword overrides by field name.

    Every settings class of planforge loads through here, so a malformed value is always a
    `SettingsError` naming the environment variable, never a raw validation error.
    """
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = str(first["loc"][0]) if first["loc"] else "?"
        info = settings_class.model_fields.get(field_name)
        alias = info.validation_alias if info is not None else None
        variable = alias if isinstance(alias, str) else field_name
        value = overrides.get(field_name, os.environ.get(variable))
        raise SettingsError(variable, value, first["msg"]) from None


def load_settings(**overrides: Any) -> FactorySettings:
    """Read settings from the environment; keyword overrides use field names.

    Raises `SettingsError` naming the first bad variable instead of a raw validation error.
    """
    return build_settings(FactorySettings, overrides)


def factory_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One `FactorySettings` field read from `environ` (default: this process's), by its
    type's rules and with the same `SettingsError` as `load_settings`, for a caller that needs
    one knob without reading every variable. Unset or blank: the default. (Fields with a
    validator of their own must be read through `load_settings`.)"""
    field = FactorySettings.model_fields[name]
    variable = str(field.validation_alias)
    raw = (os.environ if environ is None else environ).get(variable, "").strip()
    if not raw:
        return field.default
    kind: Any = (
        Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    )
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError as exc:
        raise SettingsError(variable, raw, exc.errors()[0]["msg"]) from None
