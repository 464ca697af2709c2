"""Buckets: a core portfolio and satellites, each with its own cash, positions and
configuration, planned separately. One failing bucket never stops the others."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planforge.contract import Plan
from planforge.errors import PlannerError
from planforge.holistic import HolisticConfig
from planforge.logs import get_logger
from planforge.portfolio.planner import HolisticPortfolioPlanner

__all__ = ["Bucket", "BucketReport", "plan_all_buckets"]

_log = get_logger("portfolio.buckets")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One separately planned part of a portfolio; `config` is a preset, path or TOML."""

    name: str
    context: Mapping[str, Any]
    config: HolisticConfig | str | Path | None = None
    kind: str = "satellite"


@dataclass(frozen=True, slots=True)
class BucketReport:
    bucket: str
    kind: str
    ok: bool
    plan: Plan | None
    error: str | None
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "kind": self.kind,
            "ok": self.ok,
            "plan": self.plan.model_dump(mode="json") if self.plan is not None else None,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
        }


def plan_all_buckets(
    buckets: Sequence[Bucket],
    objective: str = "Rebalance my portfolio",
    *,
    planner: HolisticPortfolioPlanner | None = None,
) -> list[BucketReport]:
    """Plan every bucket (core first, then satellites by name) and report each one.

    A bucket whose context or configuration is bad, or whose planning fails, gets a report
    with the error; the others are planned all the same.
    """
    names = [bucket.name for bucket in buckets]
    if len(set(names)) != len(names):
        raise PlannerError(
            "bucket names must be unique; rename the duplicates and try again",
            where="buckets",
            context={"buckets": names},
        )
    planner = planner if planner is not None else HolisticPortfolioPlanner()
    ordered = sorted(buckets, key=lambda bucket: (bucket.kind != "core", bucket.name))
    reports: list[BucketReport] = []
    for bucket in ordered:
        started = time.perf_counter()
        try:
            result = planner.run(objective, bucket.context, config=bucket.config)
        except Exception as exc:  # one bucket's failure is reported, never fatal
            message = (
                exc.message if isinstance(exc, PlannerError) else f"{type(exc).__name__}: {exc}"
            )
            _log.warning("bucket failed", bucket=bucket.name, error=message)
            reports.append(
                BucketReport(
                    bucket=bucket.name,
                    kind=bucket.kind,
                    ok=False,
                    plan=None,
                    error=message,
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                )
            )
            continue
        reports.append(
            BucketReport(
                bucket=bucket.name,
                kind=bucket.kind,
                ok=True,
                plan=result.plan,
                error=None,
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        )
    return reports
