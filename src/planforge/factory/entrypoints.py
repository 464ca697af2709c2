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
_VALUE = re.compile(r"^([\w.]+)\s*(?::\s*([\w.]+))?\s*(?:\[\s*([\w\s,.-]*)\])?$")


def normalise_dist_name(name: str) -> str:
    """PEP 503 normalisation, so `My_Plugin` and `my-plugin` are one distribution."""
    return _NORMALISE.sub("-", name).lower()


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """One `name = module:attr [extras]` line of a distribution's group."""

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


def _dist_name(entry: str) -> str:
    name = entry.partition("-")[0]
    if name.endswith((".dist-info", ".egg-info")):
        name = name.rsplit(".", 1)[0]
    if name.isalnum():
        return name.lower()  # the common case, without the regex
    return normalise_dist_name(name)


def _read_bytes(path: str) -> bytes | None:
    """The whole file, or None; `os.open` skips building a buffered file object."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def scan_entry_points(group: str, search_path: Iterable[str]) -> EntryPointScan:
    """Find the distributions on `search_path` that declare `group`.

    Only directories are walked (zip files and missing entries are skipped); an empty entry
    means the current directory, as on `sys.path`.
    """
    seen: set[str] = set()
    dists: list[DistEntryPoints] = []
    problems: list[EntryPointProblem] = []
    directories: list[str] = []
    scanned = 0
    needle = group.encode()
    for entry in search_path:
        directory = entry or "."
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        directories.append(directory)
        for child in sorted(names):
            if not child.endswith(_METADATA_DIR_SUFFIXES):
                continue
            dist = _dist_name(child)
            if dist in seen:
                continue
            seen.add(dist)
            scanned += 1
            dist_path = os.path.join(directory, child)
            file = os.path.join(dist_path, "entry_points.txt")
            data = _read_bytes(file)
            if data is None or needle not in data:
                continue
            found, bad = parse_entry_points(data.decode("utf-8", errors="replace"), group)
            for line, reason in bad:
                problems.append(EntryPointProblem(dist, file, line, reason))
            if found:
                entries = tuple(
                    EntryPoint(name, value, group, dist, dist_path, line)
                    for line, name, value in found
                )
                dists.append(DistEntryPoints(dist, dist_path, file, entries))
    return EntryPointScan(tuple(dists), tuple(problems), scanned, tuple(directories))


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
