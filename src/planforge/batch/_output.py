"""A batch's OUTPUT as JSON Lines: durable line by line, resumable, in input order at the end.

Each result is appended as one whole line and flushed the moment it finishes, so a batch
killed at any point (Ctrl-C, SIGKILL) leaves a valid file holding every finished plan; a
torn last line is cut off when the batch resumes. Results finish out of order, so the file
remembers where each input's line is (8 bytes an input) and, once every input is written,
is rewritten in input order and swapped in atomically; a resumed batch also drops the lines
of inputs it planned again (an earlier error) in that pass.
"""

from __future__ import annotations

import itertools
import json
import os
from array import array
from pathlib import Path
from typing import Final

from planforge.batch._inputs import BatchInput
from planforge.batch._plan_many import BatchResult

__all__ = ["JsonlOutput", "OutputExists"]

_MISSING: Final = -1


class OutputExists(FileExistsError):
    """OUTPUT is there already and the batch was not asked to resume it."""


class JsonlOutput:
    """Writes results to `path`; with `resume`, skips inputs whose plan is already there."""

    def __init__(self, path: Path, *, resume: bool = False) -> None:
        self.path = path
        self.resumed = 0
        self._done: dict[tuple[str, str, str], int] = {}
        self._offsets = array("q")
        self._lines = 0
        if path.exists() and not resume:
            raise OutputExists(
                f"{path} exists; give --resume to finish that batch, or another OUTPUT"
            )
        self._created = not path.exists()
        if not self._created:
            self._scan()
        self._file = path.open("ab")

    def _scan(self) -> None:
        """Read the plans already written; cut a torn last line (a batch killed mid-write)."""
        offset = 0
        with self.path.open("r+b") as existing:
            for raw in existing:
                if not raw.endswith(b"\n"):
                    existing.truncate(offset)
                    break
                self._lines += 1
                key = _plan_key(raw)
                if key is not None:
                    self._done.setdefault(key, offset)
                offset += len(raw)

    def skip(self, item: BatchInput, context_digest: str, config_digest: str) -> bool:
        """True when this input's plan, for these digests, is already in the file."""
        offset = self._done.pop((item.id, context_digest, config_digest), None)
        if offset is None:
            return False
        self._place(item.position, offset)
        self.resumed += 1
        return True

    def write(self, result: BatchResult) -> None:
        offset = self._file.tell()
        self._file.write(result.line.encode("utf-8") + b"\n")
        self._file.flush()  # a finished plan survives the process being killed next
        self._lines += 1
        self._place(result.position, offset)

    def _place(self, index: int, offset: int) -> None:
        offsets = self._offsets
        if index >= len(offsets):
            offsets.extend([_MISSING] * (index + 1 - len(offsets)))
        offsets[index] = offset

    def close(self) -> None:
        """Close without reordering (an interrupted batch): the file stays valid."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def abandon(self) -> None:
        """Close a batch that could not run; a file it created and never wrote is removed, so
        the same command can simply be run again."""
        self.close()
        if self._created and self._lines == 0:
            self.path.unlink(missing_ok=True)

    def finish(self) -> None:
        """Close, then put the lines in input order if they are not already."""
        self.close()
        placed = [offset for offset in self._offsets if offset != _MISSING]
        in_order = all(a < b for a, b in itertools.pairwise(placed))
        if in_order and len(placed) == self._lines:
            return
        temporary = self.path.with_name(self.path.name + ".sorting")
        with self.path.open("rb") as source, temporary.open("wb") as target:
            for offset in placed:
                source.seek(offset)
                target.write(source.readline())
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, self.path)


def _plan_key(raw: bytes) -> tuple[str, str, str] | None:
    """(id, context digest, config digest) of a line that holds a plan; None otherwise."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or "plan" not in record:
        return None
    return (
        str(record.get("id")),
        str(record.get("context_digest")),
        str(record.get("config_digest")),
    )
