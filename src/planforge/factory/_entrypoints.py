"""Entry points read straight from `*.dist-info/entry_points.txt`, without `importlib.metadata`.

Importing `importlib.metadata` alone costs tens of milliseconds, and it builds a full
distribution index we do not need. We only want one group, so we list each directory of the
search path once, read only the `entry_points.txt` files whose text mentions the group, and
parse them with a small tolerant INI reader (no `configparser`). As with `importlib.metadata`,
the first distribution of a given (PEP 503 normalised) name on the search path wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DistEntryPoints",
    "EntryPoint",
    "EntryPointProblem",
    "EntryPointScan",
    "dist_info_names",
    "normalise_dist_name",
    "parse_entry_points",
    "scan_entry_points",
]

_NORMALISE = re.compile(r"[-_.]+")
_METADATA_DIR_SUFFIXES = (".dist-info", ".egg-info")
_ENTRY_POINTS_FILE = os.sep + "entry_points.txt"
_READ_SIZE = 1 << 16
_VALUE = re.compile(r"^([\w.]+)\s*(?::\s*([\w.]+))?\s*(?:\[\s*([\w\s,.-]*)\])?$")


def normalise_dist_name(name: str) -> str:
    """PEP 503 normalisation, so `My_Plugin` and `my-plugin` are one distribution."""
    return _NORMALISE.sub("-", name).lower()


class EntryPoint(NamedTuple):
    """One `name = module:attr [extras]` line of a distribution's group.

    A named tuple: a cold discovery builds one per planner it finds.
    """

    name: str
    value: str
    group: str
    dist: str
    dist_path: str
    line: int

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        rest = self.value.partition(":")[2]
        return rest.partition("[")[0].strip()


@dataclass(frozen=True, slots=True)
class EntryPointProblem:
    """A line or file of `entry_points.txt` we could not use."""

    dist: str
    file: str
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class DistEntryPoints:
    """A distribution that declares the group: where its file is and what it declares."""

    dist: str
    dist_path: str
    file: str
    entries: tuple[EntryPoint, ...]


@dataclass(frozen=True, slots=True)
class EntryPointScan:
    """Everything one pass over the search path found for one group."""

    dists: tuple[DistEntryPoints, ...]
    problems: tuple[EntryPointProblem, ...]
    distributions_scanned: int
    directories: tuple[str, ...]


def parse_entry_points(
    text: str, group: str
) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """Read the `name = value` lines of one section of an `entry_points.txt` text.

    Returns `(entries, problems)`: entries as `(line, name, value)` in file order, problems as
    `(line, reason)` for malformed lines inside the section. Other sections are skipped
    without judging them, since they belong to other tools.
    """
    entries: list[tuple[int, str, str]] = []
    problems: list[tuple[int, str]] = []
    in_group = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                in_group = False
                if group in line:
                    problems.append((number, f"unterminated section header {line!r}"))
                continue
            in_group = line[1:-1].strip() == group
            continue
        if not in_group:
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        value = value.strip()
        if not sep or not name or not value:
            problems.append((number, f"expected 'name = module:Class', got {line!r}"))
            continue
        if _VALUE.match(value) is None:
            problems.append((number, f"entry {name!r} has a malformed value {value!r}"))
            continue
        entries.append((number, name, value))
    return entries, problems


def _dist_names(entries: list[str]) -> list[str]:
    """The normalised distribution names of metadata directories (`name-version.dist-info`).

    As `importlib.metadata` does: drop the suffix, keep what precedes the first `-`. The
    common names (letters, digits, single underscores) are normalised all at once.
    """
    stems = [entry.rpartition(".")[0].partition("-")[0] for entry in entries]
    joined = "\n".join(stems)
    if (
        "." not in joined
        and "__" not in joined
        and joined.replace("_", "").replace("\n", "0").isalnum()
    ):
        return joined.replace("_", "-").lower().split("\n") if stems else []
    return [normalise_dist_name(stem) for stem in stems]


def scan_entry_points(
    group: str, search_path: Iterable[str], *, listings: dict[str, list[str]] | None = None
) -> EntryPointScan:
    """Find the distributions on `search_path` that declare `group`.

    Only directories are walked (zip files and missing entries are skipped); an empty entry
    means the current directory, as on `sys.path`. Each directory is listed once and only
    the metadata directories' `entry_points.txt` files are opened (relative to the open
    directory, which spares the kernel a full path walk per file); a file is decoded and
    parsed only when its bytes mention the group. `listings`, when given, receives each
    directory's listing, so a module locator of the same pass need not list it again.
    """
    scan = _Scan(group)
    for entry in search_path:
        directory = entry or "."
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        if listings is not None:
            listings[directory] = names
        scan.directories.append(directory)
        try:
            dir_fd: int | None = os.open(directory, _DIRECTORY_FLAGS) if _RELATIVE_OPEN else None
        except OSError:
            dir_fd = None
        try:
            scan.directory(directory, dir_fd, names)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    return EntryPointScan(
        tuple(scan.dists), tuple(scan.problems), scan.scanned, tuple(scan.directories)
    )


_RELATIVE_OPEN = os.open in os.supports_dir_fd
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


class _Scan:
    """The state of one `scan_entry_points` pass."""

    __slots__ = ("directories", "dists", "group", "needle", "problems", "scanned", "seen")

    def __init__(self, group: str) -> None:
        self.group = group
        self.needle = group.encode()
        self.seen: set[str] = set()
        self.dists: list[DistEntryPoints] = []
        self.problems: list[EntryPointProblem] = []
        self.directories: list[str] = []
        self.scanned = 0

    def directory(self, directory: str, dir_fd: int | None, names: list[str]) -> None:
        prefix = os.path.join(directory, "")
        opened_prefix = "" if dir_fd is not None else prefix
        seen, needle, scanned = self.seen, self.needle, len(self.seen)
        children = sorted([name for name in names if name.endswith(_METADATA_DIR_SUFFIXES)])
        for child, dist in zip(children, _dist_names(children), strict=True):
            if dist in seen:
                continue
            seen.add(dist)
            try:  # this runs once per installed distribution: keep it to the syscalls
                fd = os.open(opened_prefix + child + _ENTRY_POINTS_FILE, os.O_RDONLY, dir_fd=dir_fd)
            except OSError:
                continue  # most distributions have no entry points at all
            try:
                data = os.read(fd, _READ_SIZE)
                while len(data) % _READ_SIZE == 0 and (chunk := os.read(fd, _READ_SIZE)):
                    data += chunk
            except OSError:
                continue
            finally:
                os.close(fd)
            if needle in data:
                self._parse(dist, prefix + child, data)
        self.scanned += len(seen) - scanned

    def _parse(self, dist: str, dist_path: str, data: bytes) -> None:
        file = dist_path + _ENTRY_POINTS_FILE
        group = self.group
        found, bad = parse_entry_points(data.decode("utf-8", errors="replace"), group)
        for line, reason in bad:
            self.problems.append(EntryPointProblem(dist, file, line, reason))
        if found:
            entries = tuple(
                [
                    EntryPoint(name, value, group, dist, dist_path, line)
                    for line, name, value in found
                ]
            )
            self.dists.append(DistEntryPoints(dist, dist_path, file, entries))


def dist_info_names(search_path: Sequence[str]) -> list[str]:
    """Names of the metadata directories on the search path, for a names-only fingerprint."""
    names: list[str] = []
    for entry in search_path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        names.extend(c for c in children if c.endswith(_METADATA_DIR_SUFFIXES))
    names.sort()
    return names
