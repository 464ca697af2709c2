"""The bounds of the runs table: how long and how many finished runs are kept, and how big a
run's context may be.

Read when the run store is first used (never at import); a malformed value is a
`SettingsError` naming the `PLANFORGE_RUNS_*` variable, as for every planforge setting.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from planforge.settings import build_settings

__all__ = [
    "ENV_MAX_AGE_DAYS",
    "ENV_MAX_CONTEXT_BYTES",
    "ENV_MAX_PER_USER",
    "ENV_MAX_TOTAL",
    "RunSettings",
    "load_run_settings",
]

ENV_MAX_AGE_DAYS: Final = "PLANFORGE_RUNS_MAX_AGE_DAYS"
ENV_MAX_PER_USER: Final = "PLANFORGE_RUNS_MAX_PER_USER"
ENV_MAX_TOTAL: Final = "PLANFORGE_RUNS_MAX_TOTAL"
ENV_MAX_CONTEXT_BYTES: Final = "PLANFORGE_RUNS_MAX_CONTEXT_BYTES"


def _env(name: str, default: Any, **constraints: Any) -> Any:
    return Field(default, validation_alias=name, **constraints)


class RunSettings(BaseSettings):
    """Run history bounds; each field's environment variable is its alias."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, case_sensitive=True
    )

    #: finished runs older than this (by when they ended) are pruned
    max_age_days: float = _env(ENV_MAX_AGE_DAYS, 30.0, gt=0.0, le=36_500.0)
    #: a user keeps at most this many finished runs, its newest
    max_per_user: int = _env(ENV_MAX_PER_USER, 1000, ge=1, le=100_000_000)
    #: the table keeps at most this many finished runs, the newest
    max_total: int = _env(ENV_MAX_TOTAL, 100_000, ge=1, le=1_000_000_000)
    #: a run's context, zlib-compressed, may be at most this many bytes
    max_context_bytes: int = _env(ENV_MAX_CONTEXT_BYTES, 1024 * 1024, ge=1024, le=1024**3)


def load_run_settings(**overrides: Any) -> RunSettings:
    """Read the run history bounds from the environment; keyword overrides use field names.

    Raises `SettingsError` naming the first bad variable instead of a raw validation error.
    """
    return build_settings(RunSettings, overrides)
