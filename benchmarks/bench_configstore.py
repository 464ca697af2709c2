"""The configuration store's operations, and a warm planner cache against re-reading.

Measured on SQLite (a fresh file) and, when `PLANFORGE_TEST_POSTGRES_URL` or `--postgres URL`
is given, on PostgreSQL (names get a random suffix, so a shared database is fine):

- create: `create_new_version` with content that differs each time (validation included);
- assign: `assign_config_to_bucket`, alternating two versions;
- read: `get_bucket_config`, one database read;
- rollback: `rollback_to_version`;
- cached read: `BucketPlannerCache.get_config` with the cache warm;
- naive read: what the original planner did on every iteration, read the bucket's settings
  from the database and validate them again (`get_bucket_config` + parse and validate);
  naive engine: the same plus building a fresh engine, against `planner_for` warm.

Targets: create, assign, read and rollback each <= 5 ms p50 on SQLite; a cached read
<= 1 ms p50. Prints one JSON line: p50/p95 in ms per operation and backend, the naive/cached
ratio, targets and whether they are met.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planforge.configstore import BucketPlannerCache, ConfigStore, parse_validated
from planforge.holistic import HolisticEngine
from planforge.portfolio.planner import HolisticPortfolioPlanner

TARGET_OP_P50_MS = 5.0
TARGET_CACHED_READ_P50_MS = 1.0
ROUNDS = 200
CACHED_READS = 20_000
NAIVE_READS = 300

BODY = """\
[planner]
max_depth = 4

[opportunity_calculators.profit_taking]
enabled = true

[opportunity_calculators.rebalance_buys]
enabled = true

[pattern_generators.direct_buy]
enabled = true

[pattern_generators.single_best]
enabled = true

[sequence_generators.combinatorial]
enabled = true

[filters.eligibility]
enabled = true
"""


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p95_ms": round(p95 * 1000, 4),
        "n": len(ordered),
    }


def _time(call: Callable[[int], object], rounds: int) -> list[float]:
    samples: list[float] = []
    gc.collect()
    for index in range(rounds):
        started = time.perf_counter()
        call(index)
        samples.append(time.perf_counter() - started)
    return samples


def _measure(store: ConfigStore, rounds: int) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    name, bucket = f"bench-{suffix}", f"bench-bucket-{suffix}"
    store.create_new_version(name, "bench", BODY, created_by="bench")  # warm: migrations, imports
    store.create_new_version(name, "bench", BODY + "# warm 2\n", created_by="bench")

    created: list[int] = []

    def create(index: int) -> None:
        result = store.create_new_version(
            name, "bench", f"{BODY}# round {index}\n", created_by="bench"
        )
        created.append(result.config.id)

    create_samples = _time(create, rounds)
    first, second = created[0], created[1]

    def assign(index: int) -> None:
        store.assign_config_to_bucket(bucket, first if index % 2 else second, assigned_by="bench")

    assign_samples = _time(assign, rounds)
    read_samples = _time(lambda _: store.get_bucket_config(bucket), rounds)

    def rollback(index: int) -> None:
        store.rollback_to_version(bucket, name, 1 + index % 3, assigned_by="bench", reason="b")

    rollback_samples = _time(rollback, rounds)
    return {
        "create": _percentiles(create_samples),
        "assign": _percentiles(assign_samples),
        "read": _percentiles(read_samples),
        "rollback": _percentiles(rollback_samples),
        "bucket": bucket,
    }


def _reads(store: ConfigStore, bucket: str) -> dict[str, Any]:
    cache = BucketPlannerCache(store, max_age_s=None)
    try:
        cache.get_config(bucket)  # warm
        cached = _time(lambda _: cache.get_config(bucket), CACHED_READS)
        engine_warm = _time(lambda _: cache.planner_for(bucket), CACHED_READS // 10)
    finally:
        cache.close()

    def naive(_: int) -> None:
        parse_validated(store.get_bucket_config(bucket).toml)

    planner = HolisticPortfolioPlanner()

    def naive_engine(_: int) -> None:
        parsed = parse_validated(store.get_bucket_config(bucket).toml)
        HolisticEngine(parsed, planner.domain, registry=planner.registry)

    naive_samples = _time(naive, NAIVE_READS)
    naive_engine_samples = _time(naive_engine, NAIVE_READS)
    cached_p50 = statistics.median(cached)
    return {
        "cached_read": _percentiles(cached),
        "cached_engine": _percentiles(engine_warm),
        "naive_read": _percentiles(naive_samples),
        "naive_engine": _percentiles(naive_engine_samples),
        "naive_over_cached_p50": round(statistics.median(naive_samples) / cached_p50, 1),
        "naive_engine_over_cached_engine_p50": round(
            statistics.median(naive_engine_samples) / statistics.median(engine_warm), 1
        ),
    }


def _backend(url: str | None, home: Path | None, rounds: int) -> dict[str, Any]:
    with ConfigStore(url, home=home) as store:
        ops = _measure(store, rounds)
        reads = _reads(store, ops.pop("bucket"))
    return {**ops, **reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="A PostgreSQL URL (else PLANFORGE_TEST_POSTGRES_URL).")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    postgres_url = args.postgres or os.environ.get("PLANFORGE_TEST_POSTGRES_URL") or None

    with tempfile.TemporaryDirectory(prefix="bench-configstore-") as tmp:
        sqlite = _backend(None, Path(tmp), args.rounds)
    postgres = _backend(postgres_url, None, args.rounds) if postgres_url else None

    ops = ("create", "assign", "read", "rollback")
    met = {
        **{f"sqlite_{op}": sqlite[op]["p50_ms"] <= TARGET_OP_P50_MS for op in ops},
        "cached_read": sqlite["cached_read"]["p50_ms"] <= TARGET_CACHED_READ_P50_MS,
    }
    print(
        json.dumps(
            {
                "benchmark": "configstore",
                "unit": "ms",
                "sqlite": sqlite,
                "postgres": postgres,
                "comparison": "naive read = database read + validation on every read",
                "ratio_naive_over_cached_p50": sqlite["naive_over_cached_p50"],
                "target": {
                    "op_p50_ms_sqlite": TARGET_OP_P50_MS,
                    "cached_read_p50_ms": TARGET_CACHED_READ_P50_MS,
                },
                "met": met,
                "target_met": all(met.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
