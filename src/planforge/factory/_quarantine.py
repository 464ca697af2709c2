"""Quarantined planners: the ones whose sandboxed check failed, and why.

An entry blocks a planner only while its source file is unchanged (same fingerprint), so fixing
the file is enough to get it checked again; an operator can also release it by name. The store
is a small JSON file shared between processes (`planforge.factory._statefile`): every read first
re-reads the file if it changed on disk, so `planforge quarantine release NAME` in another
process takes effect at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planforge.factory._statefile import JsonStateFile, drop_oldest
from planforge.logs import get_logger

__all__ = ["QuarantineEntry", "QuarantineStore", "file_fingerprint"]

_FORMAT_VERSION = 1
_log = get_logger("quarantine")


def file_fingerprint(path: str | os.PathLike[str] | None) -> str:
    """`size:mtime_ns` of a source file, or "" when there is no file to look at."""
    if path is None:
        return ""
    try:
        info = os.stat(path)
    except OSError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """Why `planner_name` is quarantined, since when (epoch seconds), and the `fingerprint` of
    its source file at that time ("" if unknown)."""

    planner_name: str
    module: str
    reason: str
    error_type: str
    since: float
    fingerprint: str
    path: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> QuarantineEntry:
        """Raises ValueError on a malformed record (a hand-edited or foreign file)."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry must be an object, got {type(data).__name__}")
        strings = ("planner_name", "module", "reason", "error_type", "fingerprint")
        for key in strings:
            if not isinstance(data.get(key), str):
                raise ValueError(f"entry field {key!r} must be a string")
        since = data.get("since")
        if isinstance(since, bool) or not isinstance(since, int | float):
            raise ValueError("entry field 'since' must be a number")
        path = data.get("path")
        if path is not None and not isinstance(path, str):
            raise ValueError("entry field 'path' must be a string or null")
        if not data["planner_name"]:
            raise ValueError("entry field 'planner_name' must not be empty")
        return cls(
            planner_name=data["planner_name"],
            module=data["module"],
            reason=data["reason"],
            error_type=data["error_type"],
            since=float(since),
            fingerprint=data["fingerprint"],
            path=path,
        )


class QuarantineStore:
    """Quarantine entries by planner name, persisted at `path` (None keeps them in memory).

    Holds at most `max_entries`; past that the oldest entries are dropped. Thread-safe; several
    processes may share one file.
    """

    def __init__(self, path: Path | None, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._file = JsonStateFile(path)
        self.path = self._file.path
        self.max_entries = max_entries
        self._lock = threading.RLock()
        self._entries: dict[str, QuarantineEntry] = {}
        with self._lock:
            self._refresh()

    # ------------------------------------------------------------------ queries

    def get(self, name: str) -> QuarantineEntry | None:
        with self._lock:
            self._refresh()
            return self._entries.get(name)

    def entries(self) -> list[QuarantineEntry]:
        """All entries, sorted by planner name."""
        with self._lock:
            self._refresh()
            return [self._entries[name] for name in sorted(self._entries)]

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    @staticmethod
    def is_current(entry: QuarantineEntry, fingerprint: str) -> bool:
        """True while the entry still blocks: the source file has not changed since.

        A changed file means the planner deserves a fresh check. When neither side knows the
        fingerprint ("" == ""), the entry stays current until an operator releases it.
        """
        return entry.fingerprint == fingerprint

    # ------------------------------------------------------------------ changes

    def add(self, entry: QuarantineEntry) -> None:
        """Quarantine `entry.planner_name`, replacing any earlier entry for it."""
        if not isinstance(entry, QuarantineEntry):
            raise TypeError(f"expected a QuarantineEntry, got {type(entry).__name__}")
        if not entry.planner_name:
            raise ValueError("a quarantine entry needs a planner name")
        with self._lock, self._file.locked():
            self._refresh()
            self._entries[entry.planner_name] = entry
            self._trim()
            self._save()

    def release(self, name: str) -> bool:
        """Lift the quarantine on `name`; False if it was not quarantined."""
        with self._lock, self._file.locked():
            self._refresh()
            if self._entries.pop(name, None) is None:
                return False
            self._save()
            return True

    # ------------------------------------------------------------------ persistence

    def _trim(self) -> None:
        drop_oldest(self._entries, self.max_entries, lambda e: (e.since, e.planner_name))

    def _refresh(self) -> None:
        """Re-read the file if it changed on disk since we last read or wrote it."""
        if self._file.changed():
            self._entries = self._load()

    def _load(self) -> dict[str, QuarantineEntry]:
        records = self._file.load_records(
            "entries",
            QuarantineEntry.from_dict,
            what="quarantine",
            if_unreadable="starting with no quarantined planners",
        )
        entries = {entry.planner_name: entry for entry in records}
        self._entries = entries
        self._trim()
        return self._entries

    def _save(self) -> None:
        self._file.save(
            {
                "version": _FORMAT_VERSION,
                "entries": [self._entries[name].to_dict() for name in sorted(self._entries)],
            }
        )
