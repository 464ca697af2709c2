"""One discovery engine for every plugin group: entry points, plugin directories, code.

A group (planners, holistic modules) supplies a `PluginGroup`: its entry-point group, the
setting that names its directories, how a file's source is read, and what a class of a file
becomes. The engine walks the sources in one `PluginScan` pass, reads each file once (or takes
it from the last pass when its size and mtime did not change), and collects candidates,
problems and the directories whose listings the pass relied on. `settle_duplicates` settles
duplicate names with one rule for every group: code beats a plugin directory, which beats an entry
point; among directories the earlier one wins, then the file name (sorted), then the class's
position in its file; among entry points the distribution name (normalised, sorted), then the
entry name. Finding runs no plugin code; `import_file` is the one door that does, for a
group's loader.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import CodeType, ModuleType
from typing import Any, Final, Generic, Protocol, TypeVar

from planforge.factory._collector import collector_paused
from planforge.factory._entrypoints import EntryPoint, scan_entry_points
from planforge.factory._importing import import_path
from planforge.factory._locate import ModuleLocator

__all__ = [
    "MAX_SOURCE_BYTES",
    "MISSING",
    "PluginGroup",
    "PluginProblem",
    "PluginScan",
    "Stamp",
    "import_file",
    "plugin_files",
    "settle_duplicates",
    "stamp",
]

Stamp = tuple[int, int]
MISSING: Final = (-1, -1)
MAX_SOURCE_BYTES: Final = 4 << 20
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """Something a source declared that could not become a plugin, and why."""

    source: str  # "entry_point", "directory" or "code"
    origin: str  # the distribution or directory
    target: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "origin": self.origin,
            "target": self.target,
            "reason": self.reason,
        }


class PluginGroup(Protocol[T]):
    """What one plugin group tells the engine."""

    group: str  # the entry-point group
    noun: str  # "plugin", "module": names the directories in problems
    dirs_setting: str  # the setting that lists the directories

    def parse(self, data: bytes, path: str, compiled: CodeType | None = None) -> T:
        """A file's classes; raises `SyntaxError` or `ValueError` for a broken file.

        `compiled` is the file's code from Python's fresh bytecode cache, when there is one.
        """

    def entry_point(self, scan: PluginScan[T], entry: EntryPoint, path: str | None) -> None:
        """Turn one `module:Class` entry into candidates or problems (`path`: its source)."""

    def directory_file(
        self, scan: PluginScan[T], index: int, directory: str, file_name: str, path: str
    ) -> None:
        """Turn the classes of one plugin-directory file into candidates or problems."""


def stamp(path: str) -> Stamp:
    """A file's size and mtime, `MISSING` when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return MISSING
    return (info.st_size, info.st_mtime_ns)


def _dir_mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _read(path: str) -> tuple[Stamp, bytes | str]:
    """The file's stamp (taken on the open file) and bytes, or a problem message."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return MISSING, f"cannot read {path}: {exc.strerror or exc}"
    try:
        info = os.fstat(fd)
        found = (info.st_size, info.st_mtime_ns)
        if info.st_size > MAX_SOURCE_BYTES:
            return found, f"{path} is larger than {MAX_SOURCE_BYTES} bytes; not read"
        chunks = [os.read(fd, info.st_size + 1)]
        if len(chunks[0]) > info.st_size:  # it grew while we read: take the rest too
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
    except OSError as exc:
        return MISSING, f"cannot read {path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    return found, chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(slots=True)
class PluginScan(Generic[T]):
    """The working state of one pass over a group's sources."""

    group: PluginGroup[T]
    search_path: tuple[str, ...]
    plugin_dirs: tuple[str, ...]
    previous: Mapping[str, tuple[Stamp, T | str]] = field(default_factory=dict)
    parsed: dict[str, tuple[Stamp, T | str]] = field(default_factory=dict)
    candidates: list[tuple[tuple[Any, ...], Any, Any]] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)
    dirs: dict[str, int] = field(default_factory=dict)
    modules_read: int = 0
    distributions_scanned: int = 0
    bytecode: Any = None  # a `_pycache.BytecodeCache` once a file is read

    def run(self) -> None:
        """Entry points, then plugin directories; stamps every directory the pass relied on."""
        for directory in (*self.search_path, *self.plugin_dirs):
            self.dirs[directory or "."] = _dir_mtime(directory or ".")
        listings: dict[str, list[str]] = {}
        found = scan_entry_points(self.group.group, self.search_path, listings=listings)
        locator = ModuleLocator(self.search_path, listings=listings)  # one listing a directory
        self.distributions_scanned = found.distributions_scanned
        for bad in found.problems:
            target = f"{bad.file}:{bad.line}"
            self.problem(
                "entry_point", bad.dist, target, f"malformed entry point line: {bad.reason}"
            )
        for dist in found.dists:
            for entry in dist.entries:
                if not entry.attr:
                    why = "the entry point names a module, not a class; write it as module:Class"
                    self.problem("entry_point", entry.dist, f"{entry.name} = {entry.value}", why)
                    continue
                self.group.entry_point(self, entry, locator.locate(entry.module))
        for index, directory in enumerate(self.plugin_dirs):
            self._directory(index, directory)
        for directory in locator.directories:
            if directory not in self.dirs:
                self.dirs[directory] = _dir_mtime(directory)

    def _directory(self, index: int, directory: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            group = self.group
            reason = (
                f"{group.noun} directory cannot be listed ({exc.strerror or exc}); "
                f"fix {group.dirs_setting}"
            )
            self.problem("directory", directory, directory, reason)
            return
        for file_name in names:
            stem, dot, suffix = file_name.rpartition(".")
            if not dot or suffix != "py" or not stem.isidentifier() or stem == "__init__":
                continue
            self.group.directory_file(
                self, index, directory, file_name, os.path.join(directory, file_name)
            )

    def problem(self, source: str, origin: str, target: str, reason: str) -> None:
        self.problems.append(PluginProblem(source, origin, target, reason))

    def add(self, rank_key: tuple[Any, ...], key: Any, item: Any) -> None:
        """A candidate; `rank_key` orders candidates of one key (see the module docstring)."""
        self.candidates.append((rank_key, key, item))

    def read(self, path: str, source: str, origin: str, target: str) -> tuple[T | None, str]:
        """A file's classes (read once a pass) and fingerprint; a failure becomes a problem."""
        known = self.parsed.get(path)
        if known is None:
            known = self.parsed[path] = self._parse(path)
        found, parsed = known
        if isinstance(parsed, str):
            self.problem(source, origin, target, parsed)
            return None, f"{found[0]}:{found[1]}"
        return parsed, f"{found[0]}:{found[1]}"

    def _parse(self, path: str) -> tuple[Stamp, T | str]:
        previous = self.previous.get(path)
        if previous is not None:
            now = stamp(path)
            if now != MISSING and tuple(previous[0]) == now:
                return now, previous[1]
        found, data = _read(path)
        if isinstance(data, str):
            return found, data
        self.modules_read += 1
        if self.bytecode is None:
            from planforge.factory._pycache import BytecodeCache  # a warm start reads no file

            self.bytecode = BytecodeCache()
        compiled = self.bytecode.code(path, *found)
        try:
            with collector_paused():  # a syntax tree is thousands of acyclic objects
                return found, self.group.parse(data, path, compiled)
        except SyntaxError as exc:
            return found, (
                f"{path} is not valid Python: syntax error at line {exc.lineno}: {exc.msg}; "
                "fix the file"
            )
        except ValueError as exc:  # null bytes and similar
            return found, f"{path} is not valid Python: {exc}; fix the file"


def settle_duplicates(
    candidates: Iterable[tuple[tuple[Any, ...], K, V]],
) -> tuple[dict[K, V], list[tuple[K, V, V]]]:
    """The winner of each key, and every loser as `(key, winner, loser)`, in rank order."""
    winners: dict[K, V] = {}
    losers: list[tuple[K, V, V]] = []
    for _, key, item in sorted(candidates, key=_rank_of):
        winner = winners.get(key)
        if winner is None:
            winners[key] = item
        else:
            losers.append((key, winner, item))
    return winners, losers


def _rank_of(candidate: tuple[tuple[Any, ...], Any, Any]) -> tuple[Any, ...]:
    return candidate[0]


def plugin_files(directories: Sequence[str]) -> list[str]:
    """The `.py` files of the plugin directories, for a names-only fingerprint."""
    files: list[str] = []
    for directory in directories:
        try:
            files.extend(
                os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".py")
            )
        except OSError:
            files.append(f"{directory}\0missing")
    files.sort()
    return files


def import_file(name: str, path: str) -> ModuleType:
    """Import a plugin-directory file under a private `name` (once): this runs its code."""
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == path:
        return existing
    return import_path(name, path)
