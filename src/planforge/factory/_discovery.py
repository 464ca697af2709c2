"""Discovery: find every planner and read its metadata without running plugin code.

Sources, all turned into `PlannerSpec` records:

1. entry points of the group `planforge.planners` (`name = module:Class`), read from the
   installed distributions' `entry_points.txt` files (`entrypoints.py`);
2. plugin directories (`FACTORY_PLUGIN_DIRS`): every top-level `.py` file is a module named
   after its stem, and its planners are the classes deriving from `Planner`;
3. specs registered in code, handed in by the caller (`code_specs`).

The walk over the sources is the plugin engine's (`_plugins.py`), shared with holistic modules;
modules are located on disk without importing their packages (`locate.py`) and their class
attributes are read from the source with `ast` (`_reader.py`, `metadata.py`): a file Python
cannot parse is a problem naming its line, never a healthy planner. A class whose metadata is
not plain literals, or whose source cannot be found, is handed to the `introspect` callback
(`_planners.py`; the factory runs it in the sandbox); without one it becomes a problem.

Duplicate names, one rule: code beats a plugin directory, which beats an entry point. Among
directories the earlier one in `FACTORY_PLUGIN_DIRS` wins, then the file name (sorted), then
the class's position in its file; among entry points the distribution name (normalised,
sorted) wins, then the entry name. Losers are reported in `DiscoveryResult.shadowed`.
Allow-lists and exclusions are not applied here: the factory does that, so it can explain.

Results are cached on disk (`_cache.py`: one marshal record, written atomically), keyed by
Python and planforge versions, the search path and the plugin directories. With
`deep_fingerprint` (the default) a cache entry is valid while the mtimes of the search-path and
plugin directories (and of the package directories a module lookup listed) and the size and
mtime of every module source file the results came from are unchanged: one stat pass, no reads.
`entry_points.txt` files are not stamped: installing, upgrading, reinstalling or removing a
distribution creates or deletes its `*.dist-info` directory, which changes the stamped mtime of
the search-path directory that holds it. So an in-place edit of an installed `entry_points.txt`
(by hand, not by an installer) is not noticed until the next install in that directory or a
forced rediscovery (`discover(force=True)`, `FACTORY_FORCE_REDISCOVER`). Without
`deep_fingerprint`, only the names of installed distributions and plugin files count. When the
cache is stale, files whose size and mtime did not change are not read again.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from planforge._version import __version__
from planforge.contract import PlannerSpec
from planforge.factory._cache import (
    CACHE_FORMAT,
    HEADER,
    MAGIC,
    default_cache_root,
    names_check,
    read_extra,
    read_record,
    shared_rows,
    unchanged,
    write_cache,
)
from planforge.factory._planners import (
    GROUP,
    NEEDS_SANDBOX,
    IntrospectionTarget,
    PlannerGroup,
    module_from_rows,
    module_rows,
)
from planforge.factory._plugins import PluginProblem, PluginScan, settle_duplicates
from planforge.settings import FactorySettings

__all__ = [
    "GROUP",
    "NEEDS_SANDBOX",
    "Discovery",
    "DiscoveryProblem",
    "DiscoveryResult",
    "IntrospectionTarget",
    "ShadowedPlanner",
]

#: Something discovery could not turn into a planner, and why (the engine's problem record).
DiscoveryProblem = PluginProblem
_SOURCE_RANK: Final = {"code": 0, "directory": 1, "entry_point": 2}


@dataclass(frozen=True, slots=True)
class ShadowedPlanner:
    """A planner hidden by another of the same name (see the module docstring for the rule)."""

    name: str
    winner_target: str
    winner_source: str
    loser_target: str
    loser_source: str


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    specs: tuple[PlannerSpec, ...]
    problems: tuple[DiscoveryProblem, ...]
    shadowed: tuple[ShadowedPlanner, ...]
    fingerprint: str
    from_cache: bool
    duration_ms: float
    distributions_scanned: int = 0
    modules_read: int = 0


Introspect = Callable[[IntrospectionTarget], Mapping[str, Any]]
_spec_from_row: Final = partial(tuple.__new__, PlannerSpec)  # no per-field Python work
_SPEC_FIELDS: Final = len(PlannerSpec._fields)


@dataclass(frozen=True, slots=True)
class _Base:
    """A discovery result before code specs are merged in: what the cache holds."""

    specs: tuple[PlannerSpec, ...]
    problems: tuple[DiscoveryProblem, ...]
    shadowed: tuple[ShadowedPlanner, ...]
    fingerprint: str
    distributions_scanned: int
    modules_read: int


class Discovery:
    """Finds planners; thread-compatible (the factory calls it under its own lock)."""

    def __init__(
        self,
        settings: FactorySettings,
        *,
        search_path: Sequence[str] | None = None,
        cache_dir: Path | None = None,
        introspect: Introspect | None = None,
    ) -> None:
        self._settings = settings
        self._search_path = None if search_path is None else tuple(search_path)
        self._cache_dir = cache_dir
        self._introspect = introspect
        self._memo: tuple[str, Any, _Base] | None = None
        self._last_cache_file: tuple[tuple[str, ...], tuple[str, ...], str] | None = None

    # -- public -----------------------------------------------------------------------------

    def discover(
        self, *, force: bool = False, code_specs: Sequence[PlannerSpec] = ()
    ) -> DiscoveryResult:
        """Every planner of every source, deduplicated; from the cache when nothing changed."""
        started = time.perf_counter()
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        plugin_dirs = tuple([str(d) for d in self._settings.plugin_dirs])
        cache_file = self._cache_file(search_path, plugin_dirs)
        force = force or self._settings.force_rediscover
        cached = None if force else self._load(cache_file, search_path, plugin_dirs)
        if cached is not None:
            base, from_cache = cached, True
        else:
            base = self._cold(cache_file, search_path, plugin_dirs, reuse=not force)
            from_cache = False
        return _with_code_specs(base, code_specs, from_cache, started)

    # -- cache ------------------------------------------------------------------------------

    def cache_file(self) -> Path:
        """Where this discovery's cache lives for the current search path."""
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        return Path(
            self._cache_file(search_path, tuple(str(d) for d in self._settings.plugin_dirs))
        )

    def _cache_file(self, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]) -> str:
        last = self._last_cache_file
        if last is not None and last[0] == search_path and last[1] == plugin_dirs:
            return last[2]
        root = self._cache_dir or self._settings.cache_dir or default_cache_root()
        key = "\0".join(
            (
                str(CACHE_FORMAT),
                sys.implementation.cache_tag or "",
                sys.version,
                __version__,
                GROUP,
                "deep" if self._settings.deep_fingerprint else "names",
                "\1".join(search_path),
                "\1".join(plugin_dirs),
            )
        )
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        path = os.path.join(root, "discovery", f"discovery-{digest}.marshal")
        self._last_cache_file = (search_path, plugin_dirs, path)
        return path

    def _valid(
        self, check: Any, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]
    ) -> bool:
        if self._settings.deep_fingerprint:
            return unchanged(check)
        return bool(check == names_check(search_path, plugin_dirs))

    def _load(
        self, cache_file: str, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]
    ) -> _Base | None:
        memo = self._memo
        if memo is not None and memo[0] == cache_file:
            try:
                if self._valid(memo[1], search_path, plugin_dirs):
                    return memo[2]
            except (ValueError, TypeError):
                pass
        try:
            data = read_record(cache_file)
        except OSError:
            return None  # missing or unreadable: the cold pass rewrites it
        if data is None:
            return None  # torn or foreign
        try:
            return self._from_cache(data, cache_file, search_path, plugin_dirs)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, EOFError):
            return None  # a structurally wrong cache is a miss, never a crash

    def _from_cache(
        self,
        data: bytes,
        cache_file: str,
        search_path: tuple[str, ...],
        plugin_dirs: tuple[str, ...],
    ) -> _Base | None:
        fingerprint = data[len(MAGIC) : len(MAGIC) + 16].decode("ascii")
        fmt, check, rows, problems, shadowed, scanned = marshal.loads(memoryview(data)[HEADER:])
        if fmt != CACHE_FORMAT or not self._valid(check, search_path, plugin_dirs):
            return None
        if any(len(row) != _SPEC_FIELDS for row in rows):
            return None
        base = _Base(
            tuple(map(_spec_from_row, rows)),
            tuple([DiscoveryProblem(*row) for row in problems]) if problems else (),
            tuple([ShadowedPlanner(*row) for row in shadowed]) if shadowed else (),
            fingerprint,
            int(scanned),
            0,
        )
        self._memo = (cache_file, check, base)
        return base

    # -- cold pass --------------------------------------------------------------------------

    def _cold(
        self,
        cache_file: str,
        search_path: tuple[str, ...],
        plugin_dirs: tuple[str, ...],
        *,
        reuse: bool,
    ) -> _Base:
        """Read every source; with `reuse`, files unchanged since the last pass are skipped."""
        old_files, old_introspected = read_extra(cache_file) if reuse else ({}, {})
        try:
            previous = {
                path: (stamp, rows if isinstance(rows, str) else module_from_rows(rows))
                for path, (stamp, rows) in old_files.items()
            }
        except (TypeError, ValueError):
            previous = {}  # a per-file part of another shape: read every file again
        group = PlannerGroup(self._introspect, old_introspected)
        scan: PluginScan[Any] = PluginScan(group, search_path, plugin_dirs, previous)
        scan.run()
        winners, losers = settle_duplicates(scan.candidates)
        specs = sorted(winners.values(), key=lambda s: s.name)
        shadowed = [
            ShadowedPlanner(name, w.target, w.source, loser.target, loser.source)
            for name, w, loser in losers
        ]
        problems = sorted(scan.problems, key=_problem_key)
        check = self._check(scan, search_path, plugin_dirs)
        record = (
            CACHE_FORMAT,
            check,
            shared_rows(specs),
            tuple((p.source, p.origin, p.target, p.reason) for p in problems),
            tuple(
                (s.name, s.winner_target, s.winner_source, s.loser_target, s.loser_source)
                for s in shadowed
            ),
            scan.distributions_scanned,
        )
        # marshal version 2 writes no back-references or interning flags, so equal results
        # hash equally in every process; the stored record uses version 4, whose references
        # to the shared values make it smaller and quicker to load
        fingerprint = hashlib.sha256(marshal.dumps(record, 2)).hexdigest()[:16]
        base = _Base(
            specs=tuple(specs),
            problems=tuple(problems),
            shadowed=tuple(shadowed),
            fingerprint=fingerprint,
            distributions_scanned=scan.distributions_scanned,
            modules_read=scan.modules_read,
        )
        files = {
            path: (found, parsed if isinstance(parsed, str) else module_rows(parsed))
            for path, (found, parsed) in scan.parsed.items()
        }
        extra = marshal.dumps((files, group.introspected))  # read only by a cold pass
        write_cache(cache_file, fingerprint, marshal.dumps(record, 4), extra)
        self._memo = (cache_file, check, base)
        return base

    def _check(
        self, scan: PluginScan[Any], search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]
    ) -> Any:
        """What proves the cache valid later: stamps (deep) or names."""
        if not self._settings.deep_fingerprint:
            return names_check(search_path, plugin_dirs)
        dir_paths = sorted(scan.dirs)
        file_paths = sorted(scan.parsed)
        stamps = [scan.parsed[path][0] for path in file_paths]
        return (
            tuple(dir_paths),
            tuple([scan.dirs[path] for path in dir_paths]),
            tuple(file_paths),
            tuple([found[0] for found in stamps]),
            tuple([found[1] for found in stamps]),
        )


def _problem_key(problem: DiscoveryProblem) -> tuple[str, str, str, str]:
    return (problem.source, problem.origin, problem.target, problem.reason)


def _with_code_specs(
    base: _Base, code_specs: Sequence[PlannerSpec], from_cache: bool, started: float
) -> DiscoveryResult:
    specs, shadowed = base.specs, base.shadowed
    if code_specs:
        code_winners, code_losers = settle_duplicates(
            [((0, i), spec.name, spec) for i, spec in enumerate(code_specs)]
        )
        by_name = code_winners
        merged = list(code_winners.values())
        extra: list[ShadowedPlanner] = [
            ShadowedPlanner(name, w.target, w.source, loser.target, loser.source)
            for name, w, loser in code_losers
        ]
        for spec in specs:
            winner = by_name.get(spec.name)
            if winner is None:
                merged.append(spec)
            else:
                extra.append(
                    ShadowedPlanner(
                        spec.name, winner.target, winner.source, spec.target, spec.source
                    )
                )
        for item in shadowed:
            winner = by_name.get(item.name)
            if winner is not None:
                item = ShadowedPlanner(
                    item.name, winner.target, winner.source, item.loser_target, item.loser_source
                )
            extra.append(item)
        specs = tuple(sorted(merged, key=lambda s: s.name))
        shadowed = tuple(
            sorted(
                extra, key=lambda s: (s.name, _SOURCE_RANK.get(s.loser_source, 9), s.loser_target)
            )
        )
    return DiscoveryResult(
        specs=specs,
        problems=base.problems,
        shadowed=shadowed,
        fingerprint=base.fingerprint,
        from_cache=from_cache,
        duration_ms=(time.perf_counter() - started) * 1000.0,
        distributions_scanned=base.distributions_scanned,
        modules_read=0 if from_cache else base.modules_read,
    )
