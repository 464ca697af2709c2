"""The discovery cache on disk: one marshal record a search path, written atomically.

A file holds a header (magic, fingerprint, length of the core record), the core record (what a
warm start needs: the check that proves it valid, spec rows, problems, shadowed names) and,
after it, the per-file results and sandbox answers that only a cold pass reads, so a warm
start reads the core and stops. With a deep fingerprint the check is one stat pass over the
stamped directories and files; without, the names of the installed distributions and plugin
files.
"""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from planforge.contract import PlannerSpec
from planforge.factory._entrypoints import dist_info_names
from planforge.factory._plugins import plugin_files

__all__ = [
    "CACHE_FORMAT",
    "HEADER",
    "MAGIC",
    "MAX_CACHE_FILES",
    "default_cache_root",
    "names_check",
    "read_extra",
    "read_record",
    "shared_rows",
    "unchanged",
    "write_cache",
]

CACHE_FORMAT: Final = 4  # 4: files Python cannot parse are problems; older caches are not read
MAGIC: Final = b"planforge-discovery-4\n"
HEADER: Final = len(MAGIC) + 16 + 8  # magic, fingerprint, length of the core record
MAX_CACHE_FILES: Final = 32
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


def unchanged(check: Any) -> bool:
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


def names_check(search_path: Sequence[str], plugin_dirs: Sequence[str]) -> tuple[Any, ...]:
    """The names-only check: installed distributions and plugin files."""
    return (tuple(dist_info_names(search_path)), tuple(plugin_files(plugin_dirs)))


def read_record(path: str) -> bytes | None:
    """The cache file's header and core record, without the per-file part; None if torn."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) < HEADER or not data.startswith(MAGIC):
            return None
        end = HEADER + int.from_bytes(data[HEADER - 8 : HEADER], "little")
        if len(data) >= end:
            return data[:end]
        rest = os.read(fd, end - len(data))
        return data + rest if len(data) + len(rest) == end else None
    finally:
        os.close(fd)


def shared_rows(specs: Sequence[PlannerSpec]) -> tuple[tuple[Any, ...], ...]:
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


def read_extra(path: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Per-file results and sandbox answers of the last pass; empty when unreadable."""
    try:
        data = _read_file(path)
        if data.startswith(MAGIC):
            size = int.from_bytes(data[HEADER - 8 : HEADER], "little")
            files, introspected = marshal.loads(memoryview(data)[HEADER + size :])
            if isinstance(files, dict) and isinstance(introspected, dict):
                return files, introspected
    except Exception:  # unreadable: start from nothing
        pass
    return {}, {}


def write_cache(path: str, fingerprint: str, core: bytes, extra: bytes) -> None:
    """Write atomically and prune; a read-only cache directory costs speed, not correctness."""
    try:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        header = MAGIC + fingerprint.encode("ascii") + len(core).to_bytes(8, "little")
        with open(temporary, "wb") as handle:
            handle.write(b"".join((header, core, extra)))
        os.replace(temporary, path)
        _prune(Path(directory))
    except OSError:
        pass


def default_cache_root() -> Path:
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
        return root / "planforge"
    import platformdirs  # only off Linux: its import is not free

    return Path(platformdirs.user_cache_dir("planforge"))


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
