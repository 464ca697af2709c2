"""What the module registry read from source, kept on disk for the next process.

Every new process (a CLI call, a worker, a batch) used to read each module file with Python's
parser before its first plan: about 30 ms for the built-in modules alone. The results are
kept per search path in one marshal file under the cache directory, each with its file's
size and mtime. A file whose stamp changed is read again, exactly as within one process; an
unreadable, foreign or corrupt cache file counts as no cache, and a cache directory that
cannot be written costs speed, never correctness.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from planforge.factory import default_cache_root
from planforge.holistic._sources import _ModuleClass
from planforge.settings import factory_setting

__all__ = ["MAX_CACHE_FILES", "cache_file", "load", "save"]

#: Bump when what a file's record holds changes: older files are then not read.
FORMAT: Final = 1
#: Newest files kept in the cache directory (one per search path and module directories).
MAX_CACHE_FILES: Final = 32
_PREFIX: Final = "modules-"
_FIELDS: Final = tuple(field.name for field in fields(_ModuleClass))

Parsed = dict[str, tuple[tuple[int, int], Any]]


def cache_file(
    search_path: Sequence[str], module_dirs: Sequence[str], root: Path | None = None
) -> Path:
    """The file for this search path: under `root`, `FACTORY_CACHE_DIR` or the user's cache."""
    if root is None:
        root = factory_setting("cache_dir") or default_cache_root()
    key = repr((FORMAT, sys.version_info[:2], tuple(search_path), tuple(module_dirs)))
    return root / f"{_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:20]}.marshal"


def load(path: Path) -> Parsed:
    """Each file's stamp and classes (or problem text) as last read; empty when unusable."""
    try:
        record = marshal.loads(path.read_bytes())
        parsed: Parsed = {}
        for source, ((size, mtime), value) in record.items():
            if not isinstance(source, str) or not isinstance(value, str | list):
                return {}
            classes = value if isinstance(value, str) else [_ModuleClass(*row) for row in value]
            parsed[source] = ((int(size), int(mtime)), classes)
        return parsed
    except (OSError, EOFError, ValueError, TypeError, AttributeError):
        return {}


def save(path: Path, parsed: Mapping[str, tuple[tuple[int, int], Any]]) -> None:
    """Write atomically, then keep the newest `MAX_CACHE_FILES` files of the directory."""
    record = {
        source: (
            tuple(stamp),
            value
            if isinstance(value, str)
            else [tuple(getattr(c, name) for name in _FIELDS) for c in value],
        )
        for source, (stamp, value) in parsed.items()
    }
    try:
        data = marshal.dumps(record, 4)
    except ValueError:  # a literal marshal cannot hold: not kept, read again next time
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        _prune(path.parent)
    except OSError:
        pass


def _prune(directory: Path) -> None:
    entries = [e for e in os.scandir(directory) if e.name.startswith(_PREFIX)]
    if len(entries) <= MAX_CACHE_FILES:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
    for entry in entries[MAX_CACHE_FILES:]:
        with contextlib.suppress(OSError):  # another process pruned it first
            os.unlink(entry.path)
