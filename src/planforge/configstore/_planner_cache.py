"""A ready planner engine per bucket, rebuilt only when the bucket's configuration changes.

The original planner read its settings from the database on every iteration. Here a bucket's
active configuration is read once, validated once and turned into an engine once; later reads
are a dictionary lookup. The cache listens to the store: an assignment or a rollback drops the
bucket's entry, and the next read fetches the new configuration. The engine itself is kept
while the content digest is unchanged (assigning an equal configuration rebuilds nothing).

Events only reach this process; with several processes sharing one PostgreSQL database, set
`max_age_s` to bound how long another process's assignment may go unseen (default 30 s).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planforge.configstore._records import ConfigChange, ConfigVersion
    from planforge.configstore._store import ConfigStore
    from planforge.holistic import EngineResult, HolisticEngine, Progress
    from planforge.portfolio.planner import HolisticPortfolioPlanner

__all__ = ["BucketPlannerCache", "PlannerCacheStats"]


@dataclass(slots=True)
class _Entry:
    config: ConfigVersion | None  # None: invalidated, re-read on next use
    read_at: float
    engine: HolisticEngine | None = None
    engine_digest: str | None = None


@dataclass(frozen=True, slots=True)
class PlannerCacheStats:
    """Counters since the cache was made: what was served from memory and what was rebuilt."""

    buckets: int
    hits: int
    reads: int
    builds: int
    invalidations: int
    evictions: int

    def to_dict(self) -> dict[str, int]:
        return {
            "buckets": self.buckets,
            "hits": self.hits,
            "reads": self.reads,
            "builds": self.builds,
            "invalidations": self.invalidations,
            "evictions": self.evictions,
        }


class BucketPlannerCache:
    """Per-bucket configuration and engine, least recently used beyond `max_buckets` dropped.

    Thread-safe. Store reads and engine builds run outside the lock; a result is kept only if
    no change event for the bucket arrived meanwhile, so a slow reader never puts a stale
    configuration back after an assignment.
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        max_buckets: int = 64,
        max_age_s: float | None = 30.0,
        planner: HolisticPortfolioPlanner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, got {max_buckets}")
        if max_age_s is not None and max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive or None, got {max_age_s}")
        if planner is None:
            from planforge.portfolio.planner import HolisticPortfolioPlanner

            planner = HolisticPortfolioPlanner()
        self.store = store
        self.planner = planner
        self.max_buckets = max_buckets
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._generation: dict[str, int] = {}  # bumped by every change event for a bucket
        self._epoch = 0  # bumped by invalidate-all
        self._hits = self._reads = self._builds = self._invalidations = self._evictions = 0
        self._unsubscribe: Callable[[], None] | None = store.subscribe(self._on_change)

    # -- reading -------------------------------------------------------------------------------

    def get_config(self, bucket: str) -> ConfigVersion:
        """The bucket's active configuration; `BucketNotFound` when it has none."""
        with self._lock:
            entry = self._entries.get(bucket)
            if entry is not None and entry.config is not None and self._fresh(entry):
                self._entries.move_to_end(bucket)
                self._hits += 1
                return entry.config
            stamp = (self._epoch, self._generation.get(bucket, 0))
        config = self.store.get_bucket_config(bucket)
        with self._lock:
            self._reads += 1
            if stamp == (self._epoch, self._generation.get(bucket, 0)):
                entry = self._entries.get(bucket)
                if entry is None:
                    self._entries[bucket] = _Entry(config, self._clock())
                    self._evict()
                else:
                    entry.config, entry.read_at = config, self._clock()
                    self._entries.move_to_end(bucket)
        return config

    def planner_for(self, bucket: str) -> HolisticEngine:
        """The engine for the bucket's active configuration, built once per content digest."""
        config = self.get_config(bucket)
        with self._lock:
            entry = self._entries.get(bucket)
            if (
                entry is not None
                and entry.engine is not None
                and entry.engine_digest == (config.digest)
            ):
                return entry.engine
        from planforge.configstore._diff import config_label, parse_validated

        parsed = parse_validated(config.toml, source=f"bucket {bucket}: {config_label(config)}")
        engine = self.planner.engine(parsed)
        with self._lock:
            self._builds += 1
            entry = self._entries.get(bucket)
            if (
                entry is not None
                and entry.config is not None
                and entry.config.digest == (config.digest)
            ):
                entry.engine, entry.engine_digest = engine, config.digest
        return engine

    def run(
        self,
        bucket: str,
        objective: str,
        context: Mapping[str, Any],
        *,
        progress: Progress | None = None,
    ) -> EngineResult:
        """Plan with the bucket's active configuration (the context's planner_config is
        ignored: the bucket decides)."""
        raw = {key: value for key, value in context.items() if key != "planner_config"}
        return self.planner_for(bucket).run(
            objective,
            raw,
            planner_name=self.planner.name,
            planner_version=self.planner.version,
            progress=progress,
        )

    # -- invalidation --------------------------------------------------------------------------

    def invalidate(self, bucket: str | None = None) -> None:
        """Forget a bucket's configuration (every bucket's when None); engines are kept and
        reused if the configuration read next has the same digest."""
        with self._lock:
            self._invalidations += 1
            if bucket is None:
                self._epoch += 1
                for each in self._entries.values():
                    each.config = None
                return
            self._generation[bucket] = self._generation.get(bucket, 0) + 1
            entry = self._entries.get(bucket)
            if entry is not None:
                entry.config = None
            self._trim_generations()

    def _on_change(self, change: ConfigChange) -> None:
        if change.kind != "bucket_assigned":
            return  # a new version changes no bucket: buckets point at a version
        self.invalidate(change.bucket)

    def _fresh(self, entry: _Entry) -> bool:
        return self.max_age_s is None or self._clock() - entry.read_at < self.max_age_s

    def _evict(self) -> None:
        while len(self._entries) > self.max_buckets:
            self._entries.popitem(last=False)
            self._evictions += 1

    def _trim_generations(self) -> None:
        """Generations only matter for reads in flight; keep the map bounded."""
        if len(self._generation) > 4 * self.max_buckets:
            self._generation.clear()
            self._epoch += 1  # readers in flight see a new epoch and keep nothing

    # -- bookkeeping ---------------------------------------------------------------------------

    def stats(self) -> PlannerCacheStats:
        with self._lock:
            return PlannerCacheStats(
                buckets=len(self._entries),
                hits=self._hits,
                reads=self._reads,
                builds=self._builds,
                invalidations=self._invalidations,
                evictions=self._evictions,
            )

    def close(self) -> None:
        """Stop listening to the store and drop everything."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        with self._lock:
            self._entries.clear()
            self._generation.clear()
            self._epoch += 1

    def __enter__(self) -> BucketPlannerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
