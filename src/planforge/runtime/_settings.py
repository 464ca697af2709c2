"""The runtime's knobs: per-user run limits, engine lifetimes, event buffers and Redis.

Read when asked for (never at import); a malformed value is a `SettingsError` naming the
`PLANFORGE_*` variable, as for the factory's settings.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from planforge.settings import build_settings

__all__ = ["RuntimeSettings", "load_runtime_settings"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _env(name: str, default: Any = ..., **constraints: Any) -> Any:
    return Field(default, validation_alias=name, **constraints)


def _cores() -> int:
    return os.cpu_count() or 1


class RuntimeSettings(BaseSettings):
    """Runtime settings; each field's environment variable is its alias."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, case_sensitive=True
    )

    max_runs_per_user: int = _env("PLANFORGE_MAX_RUNS_PER_USER", 5, ge=1, le=10_000)
    engine_ttl_s: float = _env("PLANFORGE_ENGINE_TTL_S", 300.0, gt=0.0)
    engine_idle_s: float = _env("PLANFORGE_ENGINE_IDLE_S", 300.0, gt=0.0)
    reap_interval_s: float = _env("PLANFORGE_REAP_INTERVAL_S", 60.0, gt=0.0)
    run_timeout_s: float = _env("PLANFORGE_RUN_TIMEOUT_S", 60.0, gt=0.0)
    event_buffer: int = _env("PLANFORGE_EVENT_BUFFER", 1000, ge=1, le=1_000_000)
    max_users: int = _env("PLANFORGE_MAX_USERS", 100_000, ge=1, le=100_000_000)
    redis_url: str | None = _env("PLANFORGE_REDIS_URL", None)
    #: Where runs plan: inline, process or ray; None: inline for the library, process for
    #: the service.
    executor: str | None = _env("PLANFORGE_EXECUTOR", None)
    workers: int = _env("PLANFORGE_WORKERS", default_factory=_cores, ge=1, le=1024)
    #: Address-space limit of each worker process, in MiB; 0: no limit.
    worker_memory_mb: int = _env("PLANFORGE_WORKER_MEMORY_MB", 2048, ge=0)
    #: A worker is replaced by a fresh one after this many runs.
    worker_max_runs: int = _env("PLANFORGE_WORKER_MAX_RUNS", 500, ge=1)
    ray_address: str | None = _env("PLANFORGE_RAY_ADDRESS", None)
    #: A replica holds each run it executes by a lease it renews a few times per lease; a run
    #: whose lease expired (its replica died) is taken up by any replica.
    run_lease_s: float = _env("PLANFORGE_RUN_LEASE_S", 30.0, gt=0.5, le=3600.0)

    @field_validator("executor", mode="before")
    @classmethod
    def _check_executor(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if value not in ("inline", "process", "ray"):
            raise ValueError("expected inline, process or ray")
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_redis_url(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("expected a URL string")
        url = value.strip()
        if not url:
            return None
        if not url.startswith(_REDIS_SCHEMES):
            raise ValueError(
                "expected a URL starting with redis://, rediss:// or unix:// followed by the "
                "host, port and database number"
            )
        return url


def load_runtime_settings(**overrides: Any) -> RuntimeSettings:
    """Read runtime settings from the environment; keyword overrides use field names.

    Raises `SettingsError` naming the first bad variable instead of a raw validation error.
    """
    return build_settings(RuntimeSettings, overrides)
