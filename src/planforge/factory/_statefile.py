"""A small JSON file in the factory's state dir, shared by every process that uses that dir.

Writes are atomic (temp file + `os.replace`) and read-modify-writes go under an advisory lock
beside the file, so two processes never lose each other's changes; a reader re-reads the file
only when its inode, size or times changed, which costs one `stat`. The quarantine and the
record of sandbox passes are both kept this way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from planforge.logs import get_logger

__all__ = ["JsonStateFile", "drop_oldest"]

T = TypeVar("T")
_log = get_logger("factory.statefile")

_Stamp = tuple[int, int, int, int]


def drop_oldest(records: dict[str, T], limit: int, age: Callable[[T], Any]) -> None:
    """Keep at most `limit` records, dropping the oldest by `age` (ties by its later parts)."""
    excess = len(records) - limit
    if excess > 0:
        oldest = sorted(records.items(), key=lambda item: age(item[1]))
        for key, _ in oldest[:excess]:
            del records[key]


class JsonStateFile:
    """One JSON file at `path`; None keeps nothing on disk (every method is then a no-op)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._stamp: _Stamp | None = None

    def _current_stamp(self) -> _Stamp | None:
        assert self.path is not None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def changed(self) -> bool:
        """True if the file changed on disk since it was last loaded or saved here."""
        return self.path is not None and self._current_stamp() != self._stamp

    def load(self) -> Any:
        """The file's JSON, or None when there is no file; raises OSError or ValueError when it
        cannot be read or parsed (the caller decides what an unreadable file means)."""
        if self.path is None:
            return None
        self._stamp = self._current_stamp()
        if self._stamp is None:
            return None
        return json.loads(self.path.read_text(encoding="utf-8"))

    def load_records(
        self, key: str, parse: Callable[[Any], T], *, what: str, if_unreadable: str
    ) -> list[T]:
        """The records under `key` (`{key: [...]}`), each read by `parse`: an unreadable file
        counts as empty and a malformed record is skipped, each with a warning, never a crash.
        """
        try:
            data = self.load()
            if data is None:
                return []
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise ValueError(f"expected an object with a {key!r} list")
        except (OSError, ValueError) as exc:
            _log.warning(
                f"{what} file is unreadable; {if_unreadable}", path=str(self.path), error=str(exc)
            )
            return []
        records: list[T] = []
        for raw in data[key]:
            try:
                records.append(parse(raw))
            except ValueError as exc:
                _log.warning(
                    f"skipping a malformed entry of the {what} file",
                    path=str(self.path),
                    error=str(exc),
                )
        return records

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
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

    def save(self, body: Any) -> None:
        """Replace the file with `body` as JSON, atomically."""
        if self.path is None:
            return
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
