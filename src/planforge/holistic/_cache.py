"""A bounded TTL + LRU cache of module results, and the canonical digests that key it.

A calculation is identified by the module (`kind.name`), a digest of the context it saw (the
domain's `context_digest`) and a digest of its parameters (sha256 of canonical JSON: sorted
keys, no whitespace, so equal parameters always give the same key in every process).

Cached values are shared between callers and threads without copying, so they must be
immutable: tuples of frozen `Action`s, or tuples of such tuples (`ActionSequence`s). `put`
refuses anything that is not a tuple; deeper immutability is the caller's promise.

Entries expire `ttl_s` seconds after they were stored (monotonic clock, injectable); the
least recently used entry is evicted when `max_entries` is reached. `max_entries=0` or
`ttl_s=0` turns the cache off (every `get` misses, `put` stores nothing).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from planforge.errors import PlannerError

__all__ = [
    "CacheKey",
    "CacheStats",
    "CachedValue",
    "CalculationCache",
    "canonical_json",
    "params_digest",
    "sha256_digest",
]

#: What the cache holds: a tuple (of frozen actions, or of tuples of them).
CachedValue = tuple[Any, ...]

#: (module key, context digest, params digest)
CacheKey = tuple[str, str, str]


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical_json)
    if isinstance(value, datetime.date | datetime.time):  # TOML dates and times
        return value.isoformat()
    raise TypeError(
        f"{type(value).__name__} values cannot be part of a digest; use JSON-like data "
        "(dicts, lists, strings, numbers, booleans, None) or a pydantic model"
    )


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same data gives the same text everywhere."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def sha256_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def params_digest(params: Mapping[str, Any] | BaseModel | None) -> str:
    """The digest of a module's parameters; `None` and `{}` are the same (no parameters)."""
    try:
        return sha256_digest({} if params is None else params)
    except (TypeError, ValueError) as exc:
        raise PlannerError(
            f"module parameters cannot be digested for the calculation cache: {exc}.",
            where="cache",
        ) from exc


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    max_entries: int
    ttl_s: float

    @property
    def hit_rate(self) -> float | None:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "size": self.size,
            "max_entries": self.max_entries,
            "ttl_s": self.ttl_s,
            "hit_rate": self.hit_rate,
        }


class CalculationCache:
    """Thread-safe; one lock guards the entries and the counters."""

    def __init__(
        self,
        max_entries: int = 512,
        ttl_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise PlannerError(
                f"CalculationCache max_entries must be an integer >= 0, got {max_entries!r}.",
                where="cache",
            )
        if (
            isinstance(ttl_s, bool)
            or not isinstance(ttl_s, int | float)
            or not math.isfinite(ttl_s)
            or ttl_s < 0
        ):
            raise PlannerError(
                f"CalculationCache ttl_s must be a finite number >= 0, got {ttl_s!r}.",
                where="cache",
            )
        self.max_entries = max_entries
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[float, CachedValue]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_s > 0

    @staticmethod
    def key(
        module_key: str, context_digest: str, params: Mapping[str, Any] | BaseModel | None
    ) -> CacheKey:
        return (module_key, context_digest, params_digest(params))

    def get(
        self, module_key: str, context_digest: str, params: Mapping[str, Any] | BaseModel | None
    ) -> CachedValue | None:
        """The cached value, or None on a miss (values are tuples, never None)."""
        key = self.key(module_key, context_digest, params)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            expires_at, value = found
            if self._clock() >= expires_at:
                del self._entries[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(
        self,
        module_key: str,
        context_digest: str,
        params: Mapping[str, Any] | BaseModel | None,
        value: CachedValue,
    ) -> None:
        if not isinstance(value, tuple):
            raise PlannerError(
                f"the calculation cache holds only immutable values (tuples of frozen actions); "
                f"got {type(value).__name__} for {module_key!r}. Convert it with tuple() first.",
                where="cache",
                context={"module": module_key},
            )
        key = self.key(module_key, context_digest, params)
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            self._entries[key] = (now + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                _, (expires_at, _) = self._entries.popitem(last=False)
                if now >= expires_at:
                    self._expirations += 1
                else:
                    self._evictions += 1

    def get_or_compute(
        self,
        module_key: str,
        context_digest: str,
        params: Mapping[str, Any] | BaseModel | None,
        compute: Callable[[], CachedValue],
    ) -> CachedValue:
        """The cached value, or `compute()` stored and returned (computed outside the lock)."""
        cached = self.get(module_key, context_digest, params)
        if cached is not None:
            return cached
        value = compute()
        self.put(module_key, context_digest, params, value)
        return value

    def invalidate(self, module_key: str | None = None, context_digest: str | None = None) -> int:
        """Drop the entries of one module and/or one context (all when both are None)."""
        with self._lock:
            doomed = [
                key
                for key in self._entries
                if (module_key is None or key[0] == module_key)
                and (context_digest is None or key[1] == context_digest)
            ]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def clear(self) -> None:
        """Drop every entry; the counters keep counting."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                size=len(self._entries),
                max_entries=self.max_entries,
                ttl_s=self.ttl_s,
            )
