"""Seeing, counting and ending every process a sandbox check started.

The sandbox helper makes itself a child subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`): when
a process a plugin started loses its parent, the kernel re-parents it to the helper instead of
to init. `setsid()` leaves the check's process group but not this tree, so a double fork cannot
slip away, and the helper can reap what it kills, leaving no zombie behind.

The tree is read from `/proc/PID/task/*/children` (or, on a kernel without that file, from the
parent pid in every `/proc/PID/stat`). Without the prctl or `/proc` (not Linux) these functions
see nothing and the helper falls back to killing the check's process group, which a process
that called `setsid()` escapes.

Stdlib only: the helper imports this before it forks its first child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection, Iterable

__all__ = [
    "PR_SET_CHILD_SUBREAPER",
    "become_subreaper",
    "children",
    "descendants",
    "is_running",
    "kill_all",
    "reap",
    "running",
    "strays",
    "sweep",
]

#: `prctl` option that makes the caller adopt its orphaned descendants (Linux 3.4+).
PR_SET_CHILD_SUBREAPER = 36
#: Most processes one walk of a tree visits; a fork bomb is cut off here and met again by the
#: next sweep round.
MAX_WALK = 4096
#: Kill-and-reap rounds before `sweep` gives up on a tree that keeps forking.
SWEEP_ROUNDS = 100
#: How long `reap` waits for SIGKILLed children to die before leaving them to the next sweep.
REAP_WAIT_S = 2.0
_REAP_POLL_S = 0.0005

_children_file: bool | None = None


def become_subreaper() -> bool:
    """Ask the kernel to re-parent orphaned descendants to this process; False if it cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (or already dead and being torn down)."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] not in (b"Z", b"X", b"x")


def _has_children_file() -> bool:
    global _children_file
    if _children_file is None:
        pid = os.getpid()
        _children_file = os.path.exists(f"/proc/{pid}/task/{pid}/children")
    return _children_file


def _children_by_scan(pid: int) -> list[int]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    parent = str(pid).encode()
    found: list[int] = []
    for entry in entries:
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and len(fields) > 1 and fields[1] == parent:
                found.append(int(entry))
    return found


def children(pid: int) -> list[int]:
    """The children of `pid` (of every one of its threads), in pid order; [] if it is gone."""
    if not _has_children_file():
        return sorted(_children_by_scan(pid))
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: set[int] = set()
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found.update(int(part) for part in handle.read().split())
        except (OSError, ValueError):
            continue
    return sorted(found)


def descendants(roots: Iterable[int]) -> list[int]:
    """Every process below `roots` (not the roots themselves), at most `MAX_WALK` of them."""
    seen: set[int] = set(roots)
    queue = list(seen)
    found: list[int] = []
    while queue and len(found) < MAX_WALK:
        for child in children(queue.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each pid that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def reap(pids: Collection[int], wait_s: float = REAP_WAIT_S) -> list[int]:
    """Wait for these (SIGKILLed) children of this process; returns those still not reaped."""
    pending = set(pids)
    deadline = time.monotonic() + wait_s
    while pending:
        for pid in sorted(pending):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (any more)
                done = pid
            if done:
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(_REAP_POLL_S)
    return sorted(pending)


def strays(keep: Collection[int]) -> list[int]:
    """This process's children that are not in `keep`: orphans re-parented to it."""
    return [pid for pid in children(os.getpid()) if pid not in keep]


def running(pids: Iterable[int]) -> set[int]:
    """Those of `pids` that are running (zombies excluded)."""
    return {pid for pid in pids if is_running(pid)}


def sweep(keep: Collection[int]) -> set[int]:
    """Kill and reap every child of this process not in `keep`, with everything below them.

    Children killed in one round pass their own children to this process (the subreaper), so
    rounds repeat until no stray is left. Returns the pids that were running when first seen.
    """
    alive: set[int] = set()
    for _ in range(SWEEP_ROUNDS):
        found = strays(keep)
        if not found:
            break
        below = descendants(found)
        alive |= running([*found, *below])
        kill_all([*found, *below])
        reap(found)
    return alive
