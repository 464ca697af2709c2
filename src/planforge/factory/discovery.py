"""Discovery: find every planner and read its metadata without running plugin code.

Sources, all turned into `PlannerSpec` records:

1. entry points of the group `planforge.planners` (`name = module:Class`), read from the
   installed distributions' `entry_points.txt` files (`entrypoints.py`);
2. plugin directories (`FACTORY_PLUGIN_DIRS`): every top-level `.py` file is a module named
   after its stem, and its planners are the classes deriving from `Planner`;
3. specs registered in code, handed in by the caller (`code_specs`).

Modules are located on disk without importing their packages (`locate.py`) and their class
attributes are read from the source (`metadata.py`). A class whose metadata is not plain
literals, or whose source cannot be found, is handed to the `introspect` callback (the
factory runs it in the sandbox); without one it becomes a problem.

Duplicate names, one rule: code beats a plugin directory, which beats an entry point. Among
directories the earlier one in `FACTORY_PLUGIN_DIRS` wins, then the file name (sorted), then
the class's position in its file; among entry points the distribution name (normalised,
sorted) wins, then the entry name. Losers are reported in `DiscoveryResult.shadowed`.
Allow-lists and exclusions are not applied here: the factory does that, so it can explain.

Results are cached on disk (marshal, written atomically), keyed by Python and planforge
versions, the search path and the plugin directories. With `deep_fingerprint` (the default) a
cache entry is valid while the mtimes of the search-path and plugin directories and the size
and mtime of every file the results came from are unchanged: one stat pass, no reads. Without
it, only the names of installed distributions and plugin files count. An in-place edit of an
`entry_points.txt` that did not declare our group before is not noticed (installers rewrite
the whole `*.dist-info` directory, which changes the directory's mtime). When the cache is
stale, files whose size and mtime did not change are not read again.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from planforge.contract import PlannerSpec, spec_from_attributes
from planforge.errors import PlannerError
from planforge.factory.entrypoints import (
    EntryPoint,
    dist_info_names,
    scan_entry_points,
)
from planforge.factory.locate import ModuleLocator
from planforge.factory.metadata import ClassMetadata, ModuleMetadata, binds_name, read_module
from planforge.settings import FactorySettings

__all__ = [
    "GROUP",
    "Discovery",
    "DiscoveryProblem",
    "DiscoveryResult",
    "IntrospectionTarget",
    "ShadowedPlanner",
]

GROUP: Final = "planforge.planners"
CACHE_FORMAT: Final = 1
MAX_CACHE_FILES: Final = 32
NEEDS_SANDBOX: Final = "metadata is not literal; needs the sandbox"
_SOURCE_RANK: Final = {"code": 0, "directory": 1, "entry_point": 2}
_MISSING: Final = (-1, -1)


@dataclass(frozen=True, slots=True)
class IntrospectionTarget:
    """A class whose metadata only the sandbox can tell; `path` is set for directory plugins."""

    module: str
    qualname: str
    path: str | None
    origin: str
    source: str


@dataclass(frozen=True, slots=True)
class DiscoveryProblem:
    """Something discovery could not turn into a planner, and why."""

    source: str
    origin: str
    target: str
    reason: str


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
_SpecRow = tuple[Any, ...]
_Stamp = tuple[int, int]


def _spec_row(spec: PlannerSpec) -> _SpecRow:
    return (
        spec.name,
        spec.version,
        spec.capabilities,
        spec.tags,
        spec.tier,
        spec.production_ready,
        spec.reliability_score,
        spec.description,
        spec.keywords,
        spec.stateful,
        spec.target,
        spec.source,
        spec.origin,
        spec.path,
        spec.fingerprint,
        spec.metadata_from,
    )


def _stamp(path: str) -> _Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return _MISSING
    return (info.st_size, info.st_mtime_ns)


def _dir_stamp(path: str) -> _Stamp:
    try:
        return (0, os.stat(path).st_mtime_ns)
    except OSError:
        return _MISSING


def _default_cache_root() -> Path:
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
        return root / "planforge"
    import platformdirs  # only off Linux: its import is not free

    return Path(platformdirs.user_cache_dir("planforge"))


@dataclass(slots=True)
class _Pass:
    """The working state of one cold discovery pass."""

    search_path: tuple[str, ...]
    old_files: Mapping[str, Any]
    old_introspected: Mapping[str, Any]
    candidates: list[tuple[tuple[Any, ...], PlannerSpec]] = field(default_factory=list)
    problems: list[DiscoveryProblem] = field(default_factory=list)
    files: dict[str, _Stamp] = field(default_factory=dict)
    dirs: dict[str, _Stamp] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)
    parsed: dict[str, ModuleMetadata | str] = field(default_factory=dict)
    introspected: dict[str, Any] = field(default_factory=dict)
    modules_read: int = 0
    distributions_scanned: int = 0


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
        self._memo: tuple[str, tuple[Any, ...], _Base] | None = None

    # -- public -----------------------------------------------------------------------------

    def discover(
        self, *, force: bool = False, code_specs: Sequence[PlannerSpec] = ()
    ) -> DiscoveryResult:
        """Every planner of every source, deduplicated; from the cache when nothing changed."""
        started = time.perf_counter()
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        plugin_dirs = tuple(str(d) for d in self._settings.plugin_dirs)
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
        return self._cache_file(search_path, tuple(str(d) for d in self._settings.plugin_dirs))

    def _cache_file(self, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]) -> Path:
        from planforge import __version__

        root = self._cache_dir or self._settings.cache_dir or _default_cache_root()
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
        return Path(root) / "discovery" / f"discovery-{digest}.marshal"

    def _check(
        self,
        paths: tuple[str, ...],
        kinds: bytes,
        search_path: tuple[str, ...],
        dirs: tuple[str, ...],
    ) -> tuple[Any, ...]:
        if not self._settings.deep_fingerprint:
            return _names_check(search_path, dirs)
        return tuple(
            _dir_stamp(path) if kind == 100 else _stamp(path)
            for path, kind in zip(paths, kinds, strict=True)
        )

    def _load(
        self, cache_file: Path, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]
    ) -> _Base | None:
        memo = self._memo
        if memo is not None and memo[0] == str(cache_file):
            paths, kinds, expected = memo[1]
            if self._check(paths, kinds, search_path, plugin_dirs) == expected:
                return memo[2]
        try:
            with open(cache_file, "rb") as handle:
                data = marshal.loads(handle.read())
        except (OSError, ValueError, EOFError, TypeError):
            return None  # missing, torn or foreign: the cold pass rewrites it
        try:
            return self._from_cache(data, cache_file, search_path, plugin_dirs)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            return None  # a structurally wrong cache is a miss, never a crash

    def _from_cache(
        self,
        data: Any,
        cache_file: Path,
        search_path: tuple[str, ...],
        plugin_dirs: tuple[str, ...],
    ) -> _Base | None:
        (fmt, fingerprint, paths, kinds, expected, rows, problems, shadowed, counts) = data[:9]
        if fmt != CACHE_FORMAT:
            return None
        if self._check(paths, kinds, search_path, plugin_dirs) != expected:
            return None
        base = _Base(
            specs=tuple([PlannerSpec(*row) for row in rows]),
            problems=tuple([DiscoveryProblem(*row) for row in problems]),
            shadowed=tuple([ShadowedPlanner(*row) for row in shadowed]),
            fingerprint=fingerprint,
            distributions_scanned=counts[0],
            modules_read=0,
        )
        self._memo = (str(cache_file), (paths, kinds, expected), base)
        return base

    def _previous(self, cache_file: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Per-file results and sandbox answers of the last pass, to skip unchanged files."""
        try:
            data = marshal.loads(cache_file.read_bytes())
            if data[0] == CACHE_FORMAT:
                files, introspected = marshal.loads(data[9])
                if isinstance(files, dict) and isinstance(introspected, dict):
                    return files, introspected
        except Exception:  # unreadable: start from nothing
            pass
        return {}, {}

    def _store(self, cache_file: Path, payload: tuple[Any, ...]) -> None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
            temporary.write_bytes(marshal.dumps(payload))
            os.replace(temporary, cache_file)
            _prune(cache_file.parent)
        except OSError:
            pass  # a read-only cache directory costs speed, not correctness

    # -- cold pass --------------------------------------------------------------------------

    def _cold(
        self,
        cache_file: Path,
        search_path: tuple[str, ...],
        plugin_dirs: tuple[str, ...],
        *,
        reuse: bool,
    ) -> _Base:
        """Read every source; with `reuse`, files unchanged since the last pass are skipped."""
        old_files, old_introspected = self._previous(cache_file) if reuse else ({}, {})
        work = _Pass(search_path, old_files, old_introspected)
        for directory in (*search_path, *plugin_dirs):
            work.dirs[directory or "."] = _dir_stamp(directory or ".")
        locator = ModuleLocator(search_path)
        self._entry_points(work, locator)
        for index, directory in enumerate(plugin_dirs):
            self._plugin_dir(work, index, directory)
        for directory in locator.directories:
            work.dirs.setdefault(directory, _dir_stamp(directory))
        specs, shadowed = _dedupe(work.candidates)
        problems = sorted(work.problems, key=_problem_key)
        dir_paths = sorted(work.dirs)
        file_paths = sorted(work.files)
        paths = (*dir_paths, *file_paths)
        kinds = bytes([100] * len(dir_paths) + [102] * len(file_paths))
        if self._settings.deep_fingerprint:
            expected: tuple[Any, ...] = tuple(
                [work.dirs[p] for p in dir_paths] + [work.files[p] for p in file_paths]
            )
        else:
            expected = _names_check(search_path, plugin_dirs)
        fingerprint = hashlib.sha256(
            marshal.dumps((CACHE_FORMAT, paths, expected, [_spec_row(s) for s in specs]))
        ).hexdigest()[:16]
        base = _Base(
            specs=tuple(specs),
            problems=tuple(problems),
            shadowed=tuple(shadowed),
            fingerprint=fingerprint,
            distributions_scanned=work.distributions_scanned,
            modules_read=work.modules_read,
        )
        payload = (
            CACHE_FORMAT,
            fingerprint,
            paths,
            kinds,
            expected,
            tuple(_spec_row(s) for s in specs),
            tuple((p.source, p.origin, p.target, p.reason) for p in problems),
            tuple(
                (s.name, s.winner_target, s.winner_source, s.loser_target, s.loser_source)
                for s in shadowed
            ),
            (work.distributions_scanned,),
            marshal.dumps((work.modules, work.introspected)),  # read only by a cold pass
        )
        self._store(cache_file, payload)
        self._memo = (str(cache_file), (paths, kinds, expected), base)
        return base

    def _entry_points(self, work: _Pass, locator: ModuleLocator) -> None:
        scan = scan_entry_points(GROUP, work.search_path)
        work.distributions_scanned = scan.distributions_scanned
        for problem in scan.problems:
            work.problems.append(
                DiscoveryProblem(
                    "entry_point",
                    problem.dist,
                    f"{problem.file}:{problem.line}",
                    f"malformed entry point line: {problem.reason}",
                )
            )
        for dist in scan.dists:
            stamp = _stamp(dist.file)
            work.files[dist.file] = stamp
            for entry in dist.entries:
                self._entry_point(work, locator, entry, f"{stamp[0]}:{stamp[1]}")

    def _entry_point(
        self, work: _Pass, locator: ModuleLocator, entry: EntryPoint, dist_stamp: str
    ) -> None:
        module, attr = entry.module, entry.attr
        rank = (2, entry.dist, entry.name)
        target = f"{module}:{attr}"
        if not attr:
            self._problem(
                work,
                "entry_point",
                entry.dist,
                f"{entry.name} = {entry.value}",
                "the entry point names a module, not a class; write it as module:Class",
            )
            return
        path = locator.locate(module)
        if path is None:
            self._sandbox(
                work,
                rank,
                IntrospectionTarget(module, attr, None, entry.dist, "entry_point"),
                dist_stamp,
                entry.name,
                why="its source file was not found (compiled, or not on the search path)",
            )
            return
        meta, fingerprint = self._read(work, path, "entry_point", entry.dist, target)
        if meta is None:
            return
        found = meta.get(attr)
        if found is None:
            if meta.get(attr.partition(".")[0]) is None and not _binds(path, attr):
                self._problem(
                    work,
                    "entry_point",
                    entry.dist,
                    target,
                    f"class {attr} not found in module {module} ({path})",
                )
                return
            self._sandbox(
                work,
                rank,
                IntrospectionTarget(module, attr, None, entry.dist, "entry_point"),
                fingerprint,
                entry.name,
                why="it is not a plain top-level class statement",
            )
            return
        if found.attributes is None:
            self._sandbox(
                work,
                rank,
                IntrospectionTarget(module, attr, None, entry.dist, "entry_point"),
                fingerprint,
                entry.name,
                why=found.reason,
            )
            return
        self._literal(
            work,
            rank,
            found.attributes,
            target,
            "entry_point",
            entry.dist,
            path,
            fingerprint,
            entry.name,
        )

    def _plugin_dir(self, work: _Pass, index: int, directory: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            self._problem(
                work,
                "directory",
                directory,
                directory,
                f"plugin directory cannot be listed ({exc.strerror or exc}); "
                "fix FACTORY_PLUGIN_DIRS",
            )
            return
        for file_name in names:
            stem, dot, suffix = file_name.rpartition(".")
            if not dot or suffix != "py" or not stem.isidentifier() or stem == "__init__":
                continue
            path = os.path.join(directory, file_name)
            meta, fingerprint = self._read(work, path, "directory", directory, f"{stem}:*")
            if meta is None:
                continue
            for position, cls in enumerate(meta.classes):
                if not cls.is_planner:
                    continue
                target = f"{stem}:{cls.qualname}"
                rank = (1, index, file_name, position)
                if cls.attributes is None:
                    self._sandbox(
                        work,
                        rank,
                        IntrospectionTarget(stem, cls.qualname, path, directory, "directory"),
                        fingerprint,
                        "",
                        why=cls.reason,
                        abstract_ok=cls.is_base,
                        path=path,
                    )
                elif cls.is_base and "name" not in cls.attributes:
                    continue  # an abstract base shared by the module's planners
                else:
                    self._literal(
                        work,
                        rank,
                        cls.attributes,
                        target,
                        "directory",
                        directory,
                        path,
                        fingerprint,
                        "",
                    )

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _problem(work: _Pass, source: str, origin: str, target: str, reason: str) -> None:
        work.problems.append(DiscoveryProblem(source, origin, target, reason))

    def _read(
        self, work: _Pass, path: str, source: str, origin: str, target: str
    ) -> tuple[ModuleMetadata | None, str]:
        """A module's metadata; from the last pass if the file did not change."""
        parsed = work.parsed.get(path)
        if parsed is None:
            stamp = _stamp(path)
            work.files[path] = stamp
            previous = work.old_files.get(path)
            if previous is not None and tuple(previous[0]) == stamp and stamp != _MISSING:
                rows = previous[1]
                parsed = rows if isinstance(rows, str) else _module_from_rows(rows)
            else:
                parsed = _read_source(path)
                work.modules_read += 1
                rows = parsed if isinstance(parsed, str) else _module_rows(parsed)
            work.modules[path] = (stamp, rows)
            work.parsed[path] = parsed
        stamp = work.files[path]
        fingerprint = f"{stamp[0]}:{stamp[1]}"
        if isinstance(parsed, str):
            self._problem(work, source, origin, target, parsed)
            return None, fingerprint
        return parsed, fingerprint

    def _literal(
        self,
        work: _Pass,
        rank: tuple[Any, ...],
        attributes: Mapping[str, Any],
        target: str,
        source: str,
        origin: str,
        path: str | None,
        fingerprint: str,
        default_name: str,
    ) -> None:
        try:
            spec = spec_from_attributes(
                attributes,
                target=target,
                source=source,
                origin=origin,
                path=path,
                fingerprint=fingerprint,
                metadata_from="ast",
                default_name=default_name,
            )
        except PlannerError as exc:
            self._problem(work, source, origin, target, exc.message)
            return
        work.candidates.append((rank, spec))

    def _sandbox(
        self,
        work: _Pass,
        rank: tuple[Any, ...],
        intro: IntrospectionTarget,
        fingerprint: str,
        default_name: str,
        *,
        why: str,
        abstract_ok: bool = False,
        path: str | None = None,
    ) -> None:
        target = f"{intro.module}:{intro.qualname}"
        key = "\0".join((target, intro.source, intro.origin, path or "", fingerprint))
        known = work.introspected if key in work.introspected else work.old_introspected
        row = known.get(key)
        if row is None:
            if self._introspect is None:
                self._problem(work, intro.source, intro.origin, target, f"{NEEDS_SANDBOX} ({why})")
                return
            try:
                attributes = dict(self._introspect(intro))
            except PlannerError as exc:
                self._problem(work, intro.source, intro.origin, target, exc.message)
                return
            if abstract_ok and not attributes.get("name"):
                work.introspected[key] = ()
                return
            try:
                spec = spec_from_attributes(
                    attributes,
                    target=target,
                    source=intro.source,
                    origin=intro.origin,
                    path=path,
                    fingerprint=fingerprint if path else "",
                    metadata_from="sandbox",
                    default_name=default_name,
                )
            except PlannerError as exc:
                self._problem(work, intro.source, intro.origin, target, exc.message)
                return
            row = _spec_row(spec)
        work.introspected[key] = row
        if row:
            work.candidates.append((rank, PlannerSpec(*row)))


@dataclass(frozen=True, slots=True)
class _Base:
    """A discovery result before code specs are merged in: what the cache holds."""

    specs: tuple[PlannerSpec, ...]
    problems: tuple[DiscoveryProblem, ...]
    shadowed: tuple[ShadowedPlanner, ...]
    fingerprint: str
    distributions_scanned: int
    modules_read: int


def _read_source(path: str) -> ModuleMetadata | str:
    """A module's classes, or a problem message."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    data = b"".join(chunks)
    try:
        meta, _ = read_module(data)
    except SyntaxError as exc:
        return f"syntax error in {path} line {exc.lineno}: {exc.msg}; fix the file"
    except ValueError as exc:  # null bytes and similar
        return f"cannot parse {path}: {exc}"
    return meta


def _module_rows(meta: ModuleMetadata) -> tuple[Any, ...]:
    """Marshal-friendly rows of a module's classes, for the per-file cache."""
    return tuple(
        (
            c.qualname,
            c.is_planner,
            c.is_base,
            None if c.attributes is None else tuple(c.attributes.items()),
            c.reason,
        )
        for c in meta.classes
    )


def _module_from_rows(rows: Iterable[Any]) -> ModuleMetadata:
    return ModuleMetadata(
        tuple(
            ClassMetadata(name, is_planner, is_base, None if attrs is None else dict(attrs), reason)
            for name, is_planner, is_base, attrs, reason in rows
        )
    )


def _binds(path: str, name: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return binds_name(handle.read(), name.partition(".")[0])
    except (OSError, SyntaxError, ValueError):
        return False


def _names_check(search_path: Sequence[str], plugin_dirs: Sequence[str]) -> tuple[Any, ...]:
    plugin_files: list[str] = []
    for directory in plugin_dirs:
        try:
            plugin_files.extend(
                os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".py")
            )
        except OSError:
            plugin_files.append(f"{directory}\0missing")
    plugin_files.sort()
    return (tuple(dist_info_names(search_path)), tuple(plugin_files))


def _problem_key(problem: DiscoveryProblem) -> tuple[str, str, str, str]:
    return (problem.source, problem.origin, problem.target, problem.reason)


def _dedupe(
    candidates: list[tuple[tuple[Any, ...], PlannerSpec]],
) -> tuple[list[PlannerSpec], list[ShadowedPlanner]]:
    winners: dict[str, PlannerSpec] = {}
    shadowed: list[ShadowedPlanner] = []
    for _, spec in sorted(candidates, key=lambda item: item[0]):
        winner = winners.get(spec.name)
        if winner is None:
            winners[spec.name] = spec
        else:
            shadowed.append(
                ShadowedPlanner(spec.name, winner.target, winner.source, spec.target, spec.source)
            )
    return sorted(winners.values(), key=lambda s: s.name), shadowed


def _with_code_specs(
    base: _Base, code_specs: Sequence[PlannerSpec], from_cache: bool, started: float
) -> DiscoveryResult:
    specs, shadowed = base.specs, base.shadowed
    if code_specs:
        candidates = [((0, i), spec) for i, spec in enumerate(code_specs)]
        code_winners, code_shadowed = _dedupe(candidates)
        by_name = {spec.name: spec for spec in code_winners}
        merged = list(code_winners)
        extra: list[ShadowedPlanner] = list(code_shadowed)
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


def _prune(directory: Path) -> None:
    """Keep the cache directory bounded: the newest `MAX_CACHE_FILES` entries survive."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith("discovery-")]
        if len(entries) <= MAX_CACHE_FILES:
            return
        entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
        for stale in entries[MAX_CACHE_FILES:]:
            os.unlink(stale.path)
    except OSError:
        pass
