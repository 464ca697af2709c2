"""A bucket's configuration and engine, cached until an assignment or rollback changes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.configstore import BucketPlannerCache, ConfigStore
from planforge.configstore.errors import BucketNotFound
from planforge.portfolio.planner import preset_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "portfolio.json"

BODY = """\
[planner]
max_depth = {depth}

[opportunity_calculators.profit_taking]
enabled = true

[opportunity_calculators.rebalance_buys]
enabled = true

[pattern_generators.single_best]
enabled = true

[pattern_generators.direct_buy]
enabled = true
"""


def body(depth: int) -> str:
    return BODY.format(depth=depth)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    with ConfigStore(home=tmp_path) as opened:
        yield opened


@pytest.fixture
def cache(store: ConfigStore) -> Iterator[BucketPlannerCache]:
    with BucketPlannerCache(store, max_age_s=None) as made:
        yield made


def test_reads_come_from_memory_until_the_bucket_changes(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    v2 = store.create_new_version("core", "Core", body(3)).config
    store.assign_config_to_bucket("core", v1.id)
    first = cache.get_config("core")
    assert first.id == v1.id
    assert cache.get_config("core") is first
    assert cache.stats().reads == 1
    assert cache.stats().hits == 1
    store.assign_config_to_bucket("core", v2.id, reason="deeper")
    assert cache.get_config("core").id == v2.id
    assert cache.stats().reads == 2


def test_the_engine_is_reused_while_the_digest_is_unchanged_and_rebuilt_after_a_change(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    v2 = store.create_new_version("core", "Core", body(4)).config
    store.assign_config_to_bucket("core", v1.id)
    engine = cache.planner_for("core")
    assert engine.config.planner.max_depth == 2
    assert cache.planner_for("core") is engine
    assert cache.stats().builds == 1

    store.assign_config_to_bucket("core", v2.id)
    rebuilt = cache.planner_for("core")
    assert rebuilt is not engine
    assert rebuilt.config.planner.max_depth == 4

    store.rollback_to_version("core", "core", 1, reason="too deep")
    rolled_back = cache.planner_for("core")
    assert rolled_back.config.planner.max_depth == 2
    assert cache.stats().builds == 3


def test_assigning_equal_content_under_another_name_keeps_the_engine(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    original = store.create_new_version("core", "Core", body(2)).config
    copy = store.create_new_version("core-copy", "Copy", body(2)).config
    assert copy.digest == original.digest
    store.assign_config_to_bucket("core", original.id)
    engine = cache.planner_for("core")
    store.assign_config_to_bucket("core", copy.id)
    assert cache.get_config("core").name == "core-copy"
    assert cache.planner_for("core") is engine
    assert cache.stats().builds == 1


def test_a_new_version_does_not_change_what_a_bucket_runs(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    store.assign_config_to_bucket("core", v1.id)
    cached = cache.get_config("core")
    before = cache.stats().invalidations
    store.create_new_version("core", "Core", body(5))
    assert cache.get_config("core") is cached
    assert cache.stats().invalidations == before


def test_buckets_are_independent(store: ConfigStore, cache: BucketPlannerCache) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    v2 = store.create_new_version("sat", "Satellite", body(3)).config
    store.assign_config_to_bucket("core", v1.id)
    store.assign_config_to_bucket("satellite", v2.id)
    core = cache.get_config("core")
    assert cache.get_config("satellite").id == v2.id
    store.assign_config_to_bucket("satellite", v1.id)
    assert cache.get_config("core") is core
    assert cache.get_config("satellite").id == v1.id


def test_an_unassigned_bucket_is_an_error_and_not_cached(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    with pytest.raises(BucketNotFound):
        cache.get_config("nowhere")
    with pytest.raises(BucketNotFound):
        cache.planner_for("nowhere")
    assert cache.stats().buckets == 0
    v1 = store.create_new_version("core", "Core", body(2)).config
    store.assign_config_to_bucket("nowhere", v1.id)
    assert cache.get_config("nowhere").id == v1.id


def test_the_cache_is_bounded_least_recently_used_first(store: ConfigStore) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    for bucket in ("a", "b", "c"):
        store.assign_config_to_bucket(bucket, v1.id)
    with BucketPlannerCache(store, max_buckets=2, max_age_s=None) as small:
        a = small.get_config("a")
        small.get_config("b")
        assert small.get_config("a") is a  # a is now the most recently used
        small.get_config("c")  # evicts b
        stats = small.stats()
        assert stats.buckets == 2
        assert stats.evictions == 1
        assert small.get_config("a") is a
        small.get_config("b")
        assert small.stats().reads == 4


def test_another_process_assignment_is_seen_after_max_age(
    store: ConfigStore, tmp_path: Path
) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    v2 = store.create_new_version("core", "Core", body(3)).config
    store.assign_config_to_bucket("core", v1.id)
    clock = FakeClock()
    with BucketPlannerCache(store, max_age_s=10.0, clock=clock) as cache:
        assert cache.get_config("core").id == v1.id
        with ConfigStore(home=tmp_path) as other:  # its events never reach this cache
            other.assign_config_to_bucket("core", v2.id)
        clock.now += 9.0
        assert cache.get_config("core").id == v1.id
        clock.now += 2.0
        assert cache.get_config("core").id == v2.id


def test_after_close_no_events_are_followed(store: ConfigStore) -> None:
    v1 = store.create_new_version("core", "Core", body(2)).config
    cache = BucketPlannerCache(store, max_age_s=None)
    store.assign_config_to_bucket("core", v1.id)
    cache.get_config("core")
    before = cache.stats().invalidations
    cache.close()
    store.assign_config_to_bucket("core", v1.id)
    assert cache.stats().invalidations == before
    assert cache.stats().buckets == 0


def test_run_plans_with_the_buckets_configuration(
    store: ConfigStore, cache: BucketPlannerCache
) -> None:
    context = json.loads(EXAMPLE.read_text())
    context["planner_config"] = "aggressive"  # ignored: the bucket decides
    shallow = store.create_new_version("core", "Core", body(1)).config
    store.assign_config_to_bucket("core", shallow.id)
    result = cache.run("core", "Rebalance my portfolio", context)
    assert len(result.plan.steps) == 1
    deeper = store.create_new_version("core", "Core", preset_text("default")).config
    store.assign_config_to_bucket("core", deeper.id)
    result = cache.run("core", "Rebalance my portfolio", context)
    assert len(result.plan.steps) > 1


@pytest.mark.parametrize(
    ("options", "words"), [({"max_buckets": 0}, "max_buckets"), ({"max_age_s": 0.0}, "max_age_s")]
)
def test_bad_bounds_are_rejected(store: ConfigStore, options: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        BucketPlannerCache(store, **options)  # type: ignore[arg-type]
