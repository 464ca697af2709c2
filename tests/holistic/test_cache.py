from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel

from planforge.errors import PlannerError
from planforge.holistic._cache import CalculationCache, canonical_json, params_digest
from planforge.holistic.modules import Action


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def action(key: str) -> Action:
    return Action("buy", key, 1.0, 10.0, 10.0, 0.5, "opportunity_buys")


class Params(BaseModel):
    threshold: float = 0.3
    symbols: tuple[str, ...] = ()


def test_params_digest_ignores_key_order_and_matches_models_and_dicts() -> None:
    assert params_digest({"b": 1, "a": [1, 2]}) == params_digest({"a": [1, 2], "b": 1})
    assert params_digest(Params()) == params_digest({"threshold": 0.3, "symbols": []})
    assert params_digest(None) == params_digest({})
    assert params_digest({"a": 1}) != params_digest({"a": 2})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical_json({"s": {3, 1, 2}}) == '{"s":[1,2,3]}'
    with pytest.raises(PlannerError, match="object values cannot be part of a digest"):
        params_digest({"bad": object()})


def test_hit_miss_and_ttl_expiry() -> None:
    clock = FakeClock()
    cache: CalculationCache = CalculationCache(10, 60.0, clock=clock)
    value = (action("AAA"),)
    assert cache.get("opportunity_calculators.x", "ctx1", {"t": 1}) is None
    cache.put("opportunity_calculators.x", "ctx1", {"t": 1}, value)
    assert cache.get("opportunity_calculators.x", "ctx1", {"t": 1}) is value
    assert cache.get("opportunity_calculators.x", "ctx2", {"t": 1}) is None  # other context
    assert cache.get("opportunity_calculators.x", "ctx1", {"t": 2}) is None  # other params
    clock.now += 60.0
    assert cache.get("opportunity_calculators.x", "ctx1", {"t": 1}) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (1, 4, 1, 0)
    assert stats.hit_rate == pytest.approx(0.2)


def test_least_recently_used_entry_is_evicted_at_the_bound() -> None:
    cache: CalculationCache = CalculationCache(2, 60.0, clock=FakeClock())
    cache.put("m", "a", None, (action("A"),))
    cache.put("m", "b", None, (action("B"),))
    assert cache.get("m", "a", None) is not None  # a is now the most recent
    cache.put("m", "c", None, (action("C"),))
    assert cache.get("m", "b", None) is None
    assert cache.get("m", "a", None) is not None
    assert cache.get("m", "c", None) is not None
    assert cache.stats().evictions == 1
    assert len(cache) == 2


def test_invalidate_by_module_or_context_and_clear() -> None:
    cache: CalculationCache = CalculationCache(10, 60.0, clock=FakeClock())
    for module in ("m1", "m2"):
        for context in ("c1", "c2"):
            cache.put(module, context, None, ())
    assert cache.invalidate(module_key="m1") == 2
    assert cache.invalidate(context_digest="c2") == 1
    assert cache.get("m2", "c1", None) == ()
    cache.clear()
    assert len(cache) == 0


def test_only_tuples_are_cached_and_a_disabled_cache_stores_nothing() -> None:
    cache: CalculationCache = CalculationCache(10, 60.0)
    with pytest.raises(PlannerError, match="immutable"):
        cache.put("m", "c", None, [action("A")])  # type: ignore[arg-type]
    off: CalculationCache = CalculationCache(0, 60.0)
    off.put("m", "c", None, (action("A"),))
    assert off.get("m", "c", None) is None
    assert not CalculationCache(10, 0.0).enabled
    with pytest.raises(PlannerError, match="max_entries"):
        CalculationCache(-1, 1.0)
    with pytest.raises(PlannerError, match="ttl_s"):
        CalculationCache(1, float("inf"))


def test_get_or_compute_computes_once_per_key() -> None:
    cache: CalculationCache = CalculationCache(10, 60.0, clock=FakeClock())
    calls: list[int] = []

    def compute() -> tuple[Action, ...]:
        calls.append(1)
        return (action("A"),)

    first = cache.get_or_compute("m", "c", {"x": 1}, compute)
    second = cache.get_or_compute("m", "c", {"x": 1}, compute)
    assert first is second
    assert len(calls) == 1


def test_concurrent_use_keeps_the_bound_and_consistent_counters() -> None:
    cache: CalculationCache = CalculationCache(8, 60.0)

    def work(worker: int) -> None:
        for index in range(200):
            key = f"c{(worker * 7 + index) % 20}"
            if cache.get("m", key, None) is None:
                cache.put("m", key, None, ())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert stats.size <= 8
    assert stats.hits + stats.misses == 800
