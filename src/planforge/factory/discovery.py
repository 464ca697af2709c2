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

Results are cached on disk (one marshal record, written atomically), keyed by Python and
planforge versions, the search path and the plugin directories. With `deep_fingerprint` (the
default) a cache entry is valid while the mtimes of the search-path and plugin directories
(and of the package directories a module lookup listed) and the size and mtime of every module
source file the results came from are unchanged: one stat pass, no reads. `entry_points.txt`
files are not stamped: installing, upgrading, reinstalling or removing a distribution creates
or deletes its `*.dist-info` directory, which changes the stamped mtime of the search-path
directory that holds it. So an in-place edit of an installed `entry_points.txt` (by hand, not
by an installer) is not noticed until the next install in that directory or a forced
rediscovery (`discover(force=True)`, `FACTORY_FORCE_REDISCOVER`). Without `deep_fingerprint`,
only the names of installed distributions and plugin files count. When the cache is stale,
files whose size and mtime did not change are not read again.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from planforge.contract import PlannerSpec, spec_from_attributes
from planforge.errors import PlannerError
from planforge.factory.entrypoints import (
    EntryPoint,
    EntryPointScan,
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
CACHE_FORMAT: Final = 3  # 3: specs carry context_kind; older caches are never read
_MAGIC: Final = b"planforge-discovery-3\n"
_HEADER: Final = len(_MAGIC) + 16 + 8  # magic, fingerprint, length of the core record
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
    return tuple(spec)  # a named tuple: its fields, in order, are the row


_spec_from_row: Final = partial(tuple.__new__, PlannerSpec)  # no per-field Python work
_SPEC_FIELDS: Final = len(PlannerSpec._fields)
_SHAREABLE: Final = tuple(
    PlannerSpec._fields.index(name)
    for name in (
        "version",
        "capabilities",
        "tags",
        "tier",
        "keywords",
        "origin",
        "path",
        "context_kind",
    )
)


def _stamp(path: str) -> _Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return _MISSING
    return (info.st_size, info.st_mtime_ns)


def _dir_mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _unchanged(check: Any) -> bool:
    """Whether every stamped directory and file still has its recorded mtime (and size)."""
    dir_paths, dir_mtimes, file_paths, sizes, mtimes = check  # zip(strict) guards the shape
    stat = os.stat
    for path, expected in zip(dir_paths, dir_mtimes, strict=True):
        try:
            mtime = stat(path).st_mtime_ns
        except OSError:
            mtime = -1
        if mtime != expected:
            return False
    for path, size, mtime in zip(file_paths, sizes, mtimes, strict=True):
        try:
            info = stat(path)
        except OSError:
            if size != -1:
                return False
            continue
        if info.st_mtime_ns != mtime or info.st_size != size:
            return False
    return True


def _read_record(path: str) -> bytes | None:
    """The cache file's header and core record, without the per-file part; None if torn."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) < _HEADER or not data.startswith(_MAGIC):
            return None
        end = _HEADER + int.from_bytes(data[_HEADER - 8 : _HEADER], "little")
        if len(data) >= end:
            return data[:end]
        rest = os.read(fd, end - len(data))
        return data + rest if len(data) + len(rest) == end else None
    finally:
        os.close(fd)


def _shared_rows(specs: Sequence[PlannerSpec]) -> tuple[_SpecRow, ...]:
    """Spec rows whose repeated values are one object each, for marshal to reference.

    Column by column, so the per-value work runs inside `map` and `zip`.
    """
    if not specs:
        return ()
    columns: list[tuple[Any, ...]] = list(zip(*specs, strict=True))
    shared: dict[Any, Any] = {}
    same = shared.setdefault
    for index in _SHAREABLE:  # strings and tuples only: True == 1.0 must not merge
        column = columns[index]
        columns[index] = tuple(map(same, column, column))
    return tuple(zip(*columns, strict=True))


def _read_file(path: str) -> bytes:
    """The whole file in one read when its size is known; raises `OSError`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]  # it grew while we read: take the rest too
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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
    dirs: dict[str, int] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)
    parsed: dict[str, tuple[ModuleMetadata | str, str]] = field(default_factory=dict)
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
        path = os.path.join(root, "discovery", f"discovery-{digest}.marshal")
        self._last_cache_file = (search_path, plugin_dirs, path)
        return path

    def _valid(
        self, check: Any, search_path: tuple[str, ...], plugin_dirs: tuple[str, ...]
    ) -> bool:
        if self._settings.deep_fingerprint:
            return _unchanged(check)
        return bool(check == _names_check(search_path, plugin_dirs))

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
            data = _read_record(cache_file)
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
        fingerprint = data[len(_MAGIC) : len(_MAGIC) + 16].decode("ascii")
        fmt, check, rows, problems, shadowed, scanned = marshal.loads(memoryview(data)[_HEADER:])
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

    def _previous(self, cache_file: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Per-file results and sandbox answers of the last pass, to skip unchanged files."""
        try:
            data = _read_file(cache_file)
            if data.startswith(_MAGIC):
                size = int.from_bytes(data[_HEADER - 8 : _HEADER], "little")
                files, introspected = marshal.loads(memoryview(data)[_HEADER + size :])
                if isinstance(files, dict) and isinstance(introspected, dict):
                    return files, introspected
        except Exception:  # unreadable: start from nothing
            pass
        return {}, {}

    def _store(self, cache_file: str, fingerprint: str, core: bytes, extra: bytes) -> None:
        try:
            directory = os.path.dirname(cache_file)
            os.makedirs(directory, exist_ok=True)
            temporary = f"{cache_file}.{os.getpid()}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(
                    b"".join(
                        (
                            _MAGIC,
                            fingerprint.encode("ascii"),
                            len(core).to_bytes(8, "little"),
                            core,
                            extra,
                        )
                    )
                )
            os.replace(temporary, cache_file)
            _prune(Path(directory))
        except OSError:
            pass  # a read-only cache directory costs speed, not correctness

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
        old_files, old_introspected = self._previous(cache_file) if reuse else ({}, {})
        work = _Pass(search_path, old_files, old_introspected)
        for directory in (*search_path, *plugin_dirs):
            work.dirs[directory or "."] = _dir_mtime(directory or ".")
        listings: dict[str, list[str]] = {}
        scan = scan_entry_points(GROUP, search_path, listings=listings)
        locator = ModuleLocator(search_path, listings=listings)  # one listing per directory
        self._entry_points(work, scan, locator)
        for index, directory in enumerate(plugin_dirs):
            self._plugin_dir(work, index, directory)
        for directory in locator.directories:
            if directory not in work.dirs:
                work.dirs[directory] = _dir_mtime(directory)
        specs, shadowed = _dedupe(work.candidates)
        problems = sorted(work.problems, key=_problem_key)
        check: Any
        if self._settings.deep_fingerprint:
            dir_paths = sorted(work.dirs)
            file_paths = sorted(work.files)
            stamps = [work.files[path] for path in file_paths]
            check = (
                tuple(dir_paths),
                tuple([work.dirs[path] for path in dir_paths]),
                tuple(file_paths),
                tuple([stamp[0] for stamp in stamps]),
                tuple([stamp[1] for stamp in stamps]),
            )
        else:
            check = _names_check(search_path, plugin_dirs)
        problem_rows = tuple((p.source, p.origin, p.target, p.reason) for p in problems)
        shadowed_rows = tuple(
            (s.name, s.winner_target, s.winner_source, s.loser_target, s.loser_source)
            for s in shadowed
        )
        record = (
            CACHE_FORMAT,
            check,
            _shared_rows(specs),
            problem_rows,
            shadowed_rows,
            work.distributions_scanned,
        )
        # marshal version 2 writes no back-references or interning flags, so equal results
        # hash equally in every process; the stored record uses version 4, whose references
        # to the shared values make it smaller and quicker to load
        fingerprint = hashlib.sha256(marshal.dumps(record, 2)).hexdigest()[:16]
        core = marshal.dumps(record, 4)
        base = _Base(
            specs=tuple(specs),
            problems=tuple(problems),
            shadowed=tuple(shadowed),
            fingerprint=fingerprint,
            distributions_scanned=work.distributions_scanned,
            modules_read=work.modules_read,
        )
        extra = marshal.dumps((work.modules, work.introspected))  # read only by a cold pass
        self._store(cache_file, fingerprint, core, extra)
        self._memo = (cache_file, check, base)
        return base

    def _entry_points(self, work: _Pass, scan: EntryPointScan, locator: ModuleLocator) -> None:
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
            for entry in dist.entries:
                self._entry_point(work, locator, entry, dist.file)

    def _entry_point(
        self, work: _Pass, locator: ModuleLocator, entry: EntryPoint, dist_file: str
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
            stamp = _stamp(dist_file)  # a reinstall gives the sandbox a new question
            self._sandbox(
                work,
                rank,
                IntrospectionTarget(module, attr, None, entry.dist, "entry_point"),
                f"{stamp[0]}:{stamp[1]}",
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
        """A module's metadata and its file's fingerprint; problems are recorded."""
        known = work.parsed.get(path)
        if known is None:
            known = work.parsed[path] = _parse(work, path)
        parsed, fingerprint = known
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


def _parse(work: _Pass, path: str) -> tuple[ModuleMetadata | str, str]:
    """Read a module once per pass; from the last pass if its size and mtime did not change."""
    previous = work.old_files.get(path)
    if previous is not None:
        stamp = _stamp(path)
        if stamp != _MISSING and tuple(previous[0]) == stamp:
            rows = previous[1]
            work.files[path] = stamp
            work.modules[path] = (stamp, rows)
            parsed = rows if isinstance(rows, str) else _module_from_rows(rows)
            return parsed, f"{stamp[0]}:{stamp[1]}"
    stamp, parsed = _read_source(path)
    work.modules_read += 1
    work.files[path] = stamp
    work.modules[path] = (stamp, parsed if isinstance(parsed, str) else _module_rows(parsed))
    return parsed, f"{stamp[0]}:{stamp[1]}"


def _read_source(path: str) -> tuple[_Stamp, ModuleMetadata | str]:
    """The file's stamp (taken on the open file) and its classes, or a problem message."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return _MISSING, f"cannot read {path}: {exc.strerror or exc}"
    try:
        info = os.fstat(fd)
        stamp = (info.st_size, info.st_mtime_ns)
        chunks = [os.read(fd, info.st_size + 1)]
        if len(chunks[0]) > info.st_size:  # it grew while we read: take the rest too
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
    except OSError as exc:
        return _MISSING, f"cannot read {path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        meta, _ = read_module(data)
    except SyntaxError as exc:
        return stamp, f"syntax error in {path} line {exc.lineno}: {exc.msg}; fix the file"
    except ValueError as exc:  # null bytes and similar
        return stamp, f"cannot parse {path}: {exc}"
    return stamp, meta


def _module_rows(meta: ModuleMetadata) -> tuple[Any, ...]:
    """Marshal-friendly rows of a module's classes, for the per-file cache."""
    return tuple(
        [(c.qualname, c.is_planner, c.is_base, c.attributes, c.reason) for c in meta.classes]
    )


def _module_from_rows(rows: Iterable[Any]) -> ModuleMetadata:
    return ModuleMetadata(
        tuple(
            [
                ClassMetadata(name, is_planner, is_base, attrs, reason)
                for name, is_planner, is_base, attrs, reason in rows
            ]
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
