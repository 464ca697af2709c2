"""Planners the sandbox has passed, remembered across processes, and the status that follows.

A planner is reported `active` only once the sandbox has passed it, `unchecked` before. A pass
is kept in a small JSON file in the factory's state dir (beside the quarantine file), keyed by
the planner's target (`module:qualname`) and its source file's fingerprint, so every process
on that state dir (the CLI, each server worker) shows what one of them checked, and editing the
file makes the planner `unchecked` again. A planner whose file cannot be fingerprinted is not
remembered: it shows `unchecked` in each new process until checked there.

Only what is shown changes: an unchecked planner is selectable as before, and every process
still checks a planner in the sandbox before its own first import of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from planforge.contract import PlannerSpec
from planforge.factory._registry import PlannerRecord, RecordStatus
from planforge.factory._statefile import JsonStateFile, drop_oldest
from planforge.logs import get_logger

__all__ = [
    "CODE_REASON",
    "SANDBOX_OFF_CHECK",
    "SANDBOX_OFF_REASON",
    "UNCHECKED_REASON",
    "PassStore",
    "SandboxPass",
    "check_result",
    "current_pass",
    "unchecked_or_active",
]

_FORMAT_VERSION = 1
_log = get_logger("sandbox")

UNCHECKED_REASON = (
    "not checked in the sandbox yet: it is checked on first use, or run "
    "`planforge planners check NAME`"
)
SANDBOX_OFF_REASON = (
    "the sandbox is off (FACTORY_SANDBOX=0): loaded without the isolated import check"
)
SANDBOX_OFF_CHECK = (
    "The sandbox is off (FACTORY_SANDBOX=0), so no planner is checked. Unset FACTORY_SANDBOX "
    "(or set it to 1) to check planners"
)
CODE_REASON = "registered in code: the sandbox does not check it"


@dataclass(frozen=True, slots=True)
class SandboxPass:
    """The sandbox passed `target` (planner `planner_name`) at `passed_at` (epoch seconds) while
    its source file had `fingerprint`; `self_test` is "passed" or "absent"."""

    target: str
    fingerprint: str
    planner_name: str
    passed_at: float
    self_test: str

    @classmethod
    def from_dict(cls, data: Any) -> SandboxPass:
        """Raises ValueError on a malformed record (a hand-edited or foreign file)."""
        if not isinstance(data, dict):
            raise ValueError(f"a pass must be an object, got {type(data).__name__}")
        for key in ("target", "fingerprint", "planner_name", "self_test"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"pass field {key!r} must be a non-empty string")
        passed_at = data.get("passed_at")
        if isinstance(passed_at, bool) or not isinstance(passed_at, int | float):
            raise ValueError("pass field 'passed_at' must be a number")
        return cls(
            target=data["target"],
            fingerprint=data["fingerprint"],
            planner_name=data["planner_name"],
            passed_at=float(passed_at),
            self_test=data["self_test"],
        )


class PassStore:
    """Sandbox passes by target, persisted at `path` (None keeps them in memory).

    One pass per target (a newer fingerprint replaces the older), at most `max_entries`, the
    oldest dropped first. A corrupt file counts as empty (with a warning) and is rewritten on
    the next pass. Thread-safe; several processes may share one file.
    """

    def __init__(self, path: Path | None, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._file = JsonStateFile(path)
        self.path = self._file.path
        self.max_entries = max_entries
        self._lock = threading.RLock()
        self._passes: dict[str, SandboxPass] = {}

    def get(self, target: str, fingerprint: str) -> SandboxPass | None:
        """The pass for `target` while its source still has `fingerprint`, else None."""
        found = self.snapshot().get(target) if fingerprint else None
        return found if found is not None and found.fingerprint == fingerprint else None

    def snapshot(self) -> Mapping[str, SandboxPass]:
        """The latest pass of every target, as the file holds them now (read-only)."""
        with self._lock:
            self._refresh()
            return MappingProxyType(self._passes)

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._passes)

    def add(self, entry: SandboxPass) -> bool:
        """Remember a pass; False (nothing kept) when the source has no fingerprint."""
        if not isinstance(entry, SandboxPass):
            raise TypeError(f"expected a SandboxPass, got {type(entry).__name__}")
        if not entry.fingerprint or not entry.target:
            return False
        with self._lock, self._file.locked():
            self._refresh()
            self._passes = {**self._passes, entry.target: entry}  # snapshots stay unchanged
            self._trim()
            self._file.save(
                {
                    "version": _FORMAT_VERSION,
                    "passes": [asdict(self._passes[key]) for key in sorted(self._passes)],
                }
            )
        return True

    def _trim(self) -> None:
        drop_oldest(self._passes, self.max_entries, lambda p: (p.passed_at, p.target))

    def _refresh(self) -> None:
        if self._file.changed():
            self._passes = self._load()
            self._trim()

    def _load(self) -> dict[str, SandboxPass]:
        records = self._file.load_records(
            "passes",
            SandboxPass.from_dict,
            what="sandbox pass",
            if_unreadable="every planner shows unchecked until checked",
        )
        return {entry.target: entry for entry in records}


def current_pass(
    spec: PlannerSpec, passes: Mapping[str, SandboxPass], fingerprint: Callable[[], str]
) -> SandboxPass | None:
    """The pass of `spec`'s target if its source is unchanged since; `fingerprint()` (a stat)
    is only called when the target has a pass at all."""
    known = passes.get(spec.target)
    return known if known is not None and known.fingerprint == fingerprint() else None


def unchecked_or_active(
    spec: PlannerSpec, *, sandbox: bool, checked_here: bool, passed: SandboxPass | None
) -> tuple[RecordStatus, str | None]:
    """The status of a planner nothing excludes: `active` once the sandbox has passed it (here
    or, for this very file, in another process), `unchecked` before.

    A planner registered in code is never sandboxed, so it is active as it is; with the sandbox
    off every planner is active, and the reason says that nothing checked it.
    """
    if spec.source == "code":
        return RecordStatus.ACTIVE, None
    if not sandbox:
        return RecordStatus.ACTIVE, SANDBOX_OFF_REASON
    if checked_here or passed is not None:
        return RecordStatus.ACTIVE, None
    return RecordStatus.UNCHECKED, UNCHECKED_REASON


def check_result(record: PlannerRecord) -> dict[str, Any]:
    """One `check_planners` result for `record` as it stands; "result" is "skipped" already
    when there is nothing to check (not allowed, registered in code), else None."""
    result: dict[str, Any] = {
        "name": record.name,
        "target": record.spec.target,
        "result": None,
        "status": str(record.status),
        "reason": None,
        "self_test": None,
        "duration_ms": None,
    }
    if record.status is RecordStatus.NOT_ALLOWED:
        result.update(result="skipped", reason=record.status_reason)
    elif record.spec.source == "code":
        result.update(result="skipped", reason=CODE_REASON)
    return result
