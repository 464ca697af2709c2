"""Quarantined planners: the ones whose sandboxed check failed, and why.

An entry blocks a planner only while its source file is unchanged (same fingerprint), so fixing
the file is enough to get it checked again; an operator can also release it by name. The store
is a small JSON file shared between processes: writes are atomic (temp file + `os.replace`)
under an advisory lock, and every read first re-reads the file if it changed on disk, so
`planforge quarantine release NAME` in another process takes effect at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


_Stamp = tuple[int, int, int, int]


class QuarantineStore:
    """Quarantine entries by planner name, persisted at `path` (None keeps them in memory).

    Holds at most `max_entries`; past that the oldest entries are dropped. Thread-safe; several
    processes may share one file.
    """

    def __init__(self, path: Path | None, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self._lock = threading.RLock()
        self._entries: dict[str, QuarantineEntry] = {}
        self._stamp: _Stamp | None = None
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
        with self._lock, self._file_lock():
            self._refresh()
            self._entries[entry.planner_name] = entry
            self._trim()
            self._save()

    def release(self, name: str) -> bool:
        """Lift the quarantine on `name`; False if it was not quarantined."""
        with self._lock, self._file_lock():
            self._refresh()
            if self._entries.pop(name, None) is None:
                return False
            self._save()
            return True

    # ------------------------------------------------------------------ persistence

    def _trim(self) -> None:
        excess = len(self._entries) - self.max_entries
        if excess <= 0:
            return
        oldest = sorted(self._entries.values(), key=lambda e: (e.since, e.planner_name))
        for entry in oldest[:excess]:
            del self._entries[entry.planner_name]

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An advisory lock beside the file, so two processes' read-modify-writes don't mix."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _current_stamp(self) -> _Stamp | None:
        assert self.path is not None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def _refresh(self) -> None:
        """Re-read the file if it changed on disk since we last read or wrote it."""
        if self.path is None:
            return
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._entries = {} if stamp is None else self._load()

    def _load(self) -> dict[str, QuarantineEntry]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
                raise ValueError("expected an object with an 'entries' list")
        except (OSError, ValueError) as exc:
            _log.warning(
                "quarantine file is unreadable; starting with no quarantined planners",
                path=str(self.path),
                error=str(exc),
            )
            return {}
        entries: dict[str, QuarantineEntry] = {}
        for raw in data["entries"]:
            try:
                entry = QuarantineEntry.from_dict(raw)
            except ValueError as exc:
                _log.warning(
                    "skipping a malformed quarantine entry", path=str(self.path), error=str(exc)
                )
                continue
            entries[entry.planner_name] = entry
        self._entries = entries
        self._trim()
        return self._entries

    def _save(self) -> None:
        if self.path is None:
            return
        body = {
            "version": _FORMAT_VERSION,
            "entries": [self._entries[name].to_dict() for name in sorted(self._entries)],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o644)  # shared with the operator's CLI, like any config file
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._stamp = self._current_stamp()
