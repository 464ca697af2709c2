from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planforge.errors import PlannerError
from planforge.portfolio.buckets import Bucket, plan_all_buckets
from planforge.portfolio.planner import HolisticPortfolioPlanner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"


@pytest.fixture(scope="module")
def planner() -> HolisticPortfolioPlanner:
    return HolisticPortfolioPlanner()


@pytest.fixture(scope="module")
def context() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def test_each_bucket_is_planned_with_its_own_configuration(
    planner: HolisticPortfolioPlanner, context: dict[str, Any]
) -> None:
    satellite = {**context, "cash": 500.0}
    reports = plan_all_buckets(
        [
            Bucket("tech", satellite, "aggressive"),
            Bucket("core", context, "conservative", kind="core"),
        ],
        planner=planner,
    )
    assert [(r.bucket, r.kind, r.ok) for r in reports] == [
        ("core", "core", True),
        ("tech", "satellite", True),
    ]
    direct = planner.run("Rebalance my portfolio", context, config="conservative").plan
    assert reports[0].plan is not None
    assert reports[0].plan.steps == direct.steps


def test_a_failing_bucket_never_stops_the_others(
    planner: HolisticPortfolioPlanner, context: dict[str, Any]
) -> None:
    broken = {**context, "cash": -5}
    reports = plan_all_buckets(
        [
            Bucket("core", context, kind="core"),
            Bucket("bad-context", broken),
            Bucket("bad-config", context, "[planner]\nmax_depth = 'deep'\n"),
            Bucket("unknown-preset", context, "nonexistent.toml"),
        ],
        planner=planner,
    )
    by_name = {report.bucket: report for report in reports}
    assert by_name["core"].ok
    assert not by_name["bad-context"].ok
    assert "cash" in (by_name["bad-context"].error or "")
    assert not by_name["bad-config"].ok
    assert "max_depth" in (by_name["bad-config"].error or "")
    assert not by_name["unknown-preset"].ok
    assert json.loads(json.dumps(by_name["core"].to_dict()))["plan"]["steps"]


def test_bucket_names_must_be_unique(
    planner: HolisticPortfolioPlanner, context: dict[str, Any]
) -> None:
    with pytest.raises(PlannerError, match="unique"):
        plan_all_buckets([Bucket("a", context), Bucket("a", context)], planner=planner)
