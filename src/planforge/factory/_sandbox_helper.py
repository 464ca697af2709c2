"""The sandbox helper process: preloads planforge's contract once, then forks one child per check.

Run as `python -m planforge.factory._sandbox_helper` by `planforge.factory._sandbox.Sandbox`.
Forking from a warm process costs about a millisecond, where a fresh interpreter costs tens of
milliseconds before the plugin's own import even starts, and plugins (which subclass
`Planner`) find pydantic already imported. What a child does is in
`planforge.factory._sandbox_child`.

Protocol: each message is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON, requests on the helper's stdin and replies on its stdout. The helper first sends
`{"ready": true, "pid": ..., "preload_ms": ..., "subreaper": ...}` (or `{"ready": false,
"error": ...}`), then answers each request with the facts of one child's run; it exits when its
stdin closes. Judging those facts (timeout, crash, exception, processes left behind...) is the
parent's job.

Latency: the next child (a "spare") is forked while the current one imports, and waits for its
request with its copy-on-write faults already taken; a child that has answered cleanly is
reaped while the helper waits for work, not before the reply.

Processes a check starts: the helper is a child subreaper (see
`planforge.factory._sandbox_reaper`), so every process a check's child starts stays in the
helper's tree, even after `setsid()` and a double fork. When a check ends the helper counts the
ones still running (reported as `leftovers`, which fails the check), kills them all and reaps
them; the spare and the children still being reaped are the helper's own and are never touched.
Each child is also its own process group, killed as a group, and is SIGKILLed by the kernel if
the helper dies. Where the subreaper prctl is missing (not Linux) only the process-group kill
remains, and a process that called `setsid()` escapes it. This is isolation for resilience, not
a security boundary: the child runs the plugin's code with the helper's privileges, and if the
helper itself is killed, what its checks left running is adopted by init.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import select
import signal
import struct
import sys
import time
from typing import Any

from planforge.factory._sandbox_child import child_main, phase_name, write_all
from planforge.factory._sandbox_reaper import (
    become_subreaper,
    descendants,
    kill_all,
    running,
    strays,
    sweep,
)

__all__ = ["HEADER", "decode_message", "encode_message", "main"]

#: Length prefix of every message.
HEADER = struct.Struct(">I")
#: Largest message either side accepts; a bigger one means a broken peer.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Largest child result the helper accepts (metadata plus a traceback tail).
MAX_RESULT_BYTES = 1024 * 1024
_READ_CHUNK = 65536
#: Bytes of a child's phase pipe the helper reads (the child writes one per phase).
_PHASE_BYTES = 64


def encode_message(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return HEADER.pack(len(body)) + body


def decode_message(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- the helper side


class _Tail:
    """The last `limit` bytes of a stream, plus how many bytes went by."""

    __slots__ = ("data", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group and the child (the fallback where no subreaper is)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _drain(fd: int, sink: _Tail | bytearray, budget: int) -> None:
    """Read what is already in a pipe whose writer is gone (or stuck in a grandchild)."""
    os.set_blocking(fd, False)
    while budget > 0:
        try:
            chunk = os.read(fd, min(_READ_CHUNK, budget))
        except BlockingIOError:
            return
        if not chunk:
            return
        budget -= len(chunk)
        if isinstance(sink, _Tail):
            sink.add(chunk)
        else:
            sink += chunk


class _Child:
    """A forked child waiting for its request, and the helper's ends of its pipes."""

    __slots__ = ("out_r", "phase_r", "pid", "pidfd", "req_w", "res_r")

    def __init__(self, inherited: tuple[int, ...]) -> None:
        """Fork a spare; `inherited` are the helper's fds the spare must close."""
        req_r, self.req_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.phase_r, phase_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which always _exits
            child_main(req_r, out_w, res_w, phase_w, (*inherited, *self.fds()))
        self.pid = pid
        for fd in (req_r, out_w, res_w, phase_w):
            os.close(fd)
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpgid(pid, pid)  # also done by the child; whoever runs first wins the race
        self.pidfd = os.pidfd_open(pid)

    def fds(self) -> tuple[int, ...]:
        return (self.req_w, self.out_r, self.res_r, self.phase_r)

    def alive(self) -> bool:
        """False if the spare died while waiting (killed from outside, say)."""
        return not select.select([self.pidfd], [], [], 0)[0]

    def discard(self) -> None:
        self.close_pipes()
        _kill_group(self.pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.pidfd)

    def close_pipes(self) -> None:
        for fd in self.fds():
            with contextlib.suppress(OSError):
                os.close(fd)


class _Reaper:
    """Children that answered cleanly and are exiting; reaped while the helper waits for work."""

    def __init__(self) -> None:
        self.pidfds: dict[int, int] = {}

    def pids(self) -> set[int]:
        return set(self.pidfds.values())

    def add(self, pid: int, pidfd: int) -> None:
        self.pidfds[pidfd] = pid

    def reap(self, pidfd: int) -> None:
        pid = self.pidfds.pop(pidfd)
        # Kill anything it started after answering first: until the waitpid below reaps it,
        # its pid (and so its process group's id) cannot be reused by another process.
        _kill_group(pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        os.close(pidfd)

    def reap_all(self) -> None:
        for pidfd in sorted(self.pidfds):
            self.reap(pidfd)


def _end_check(
    child: _Child, *, clean: bool, reaper: _Reaper, keep: set[int]
) -> tuple[int, set[int]]:
    """Count, kill and reap everything the check left running.

    The child is not reaped yet (alive, or a zombie holding its pid and process group). Left
    running: its descendants, and the orphans it or they left, which the kernel re-parented to
    the helper. Returns the child's wait status (0 for one that answered cleanly) and the pids
    that were left running.
    """
    pid = child.pid
    orphans = strays(keep | {pid})
    left = running([*orphans, *descendants([*orphans, pid])])
    if clean and not left:
        reaper.add(pid, child.pidfd)  # it is exiting on its own; reap it off the critical path
        child.pidfd = -1
        return 0, sweep(keep | {pid}) if orphans else set()
    _kill_group(pid)
    kill_all(sorted(left))
    _, status = os.waitpid(pid, 0)
    if clean:
        status = 0  # it answered; it was killed only to end what it left running
    return status, left | sweep(keep)


class _Answer:
    """What a check's child wrote and how it ended, as the poll loop gathered it."""

    __slots__ = (
        "answered",
        "exited",
        "output",
        "output_exceeded",
        "phases",
        "result",
        "result_too_big",
        "timed_out",
    )

    def __init__(self, tail_bytes: int) -> None:
        self.output = _Tail(tail_bytes)
        self.result = bytearray()
        self.phases = bytearray()
        self.timed_out = self.output_exceeded = self.result_too_big = False
        self.answered = self.exited = False


def _run_child(
    child: _Child, request: dict[str, Any], reaper: _Reaper, protocol_fds: tuple[int, ...]
) -> tuple[dict[str, Any], _Child | None]:
    """Hand `request` to `child` and collect its answer; also forks the next spare meanwhile."""
    answer = _Answer(int(request["tail_bytes"]))
    started = time.perf_counter()
    deadline = started + float(request["timeout_s"])
    with contextlib.suppress(BrokenPipeError):  # a dead spare: its status below says how
        write_all(child.req_w, json.dumps(request, separators=(",", ":")).encode())
    os.close(child.req_w)
    # Fork the next spare now, while this child imports: on a multi-core machine the fork
    # overlaps the check instead of delaying the next request.
    spare: _Child | None = None
    with contextlib.suppress(OSError):
        inherited = (*protocol_fds, child.out_r, child.res_r, child.phase_r, child.pidfd)
        spare = _Child((*inherited, *sorted(reaper.pidfds)))
    try:
        _collect(child, answer, deadline, int(request["max_output_bytes"]))
        _drain(child.phase_r, answer.phases, _PHASE_BYTES)
        keep = reaper.pids() | ({spare.pid} if spare is not None else set())
        clean = answer.answered and not answer.output_exceeded and not answer.result_too_big
        status, left = _end_check(child, clean=clean, reaper=reaper, keep=keep)
    finally:
        for fd in (child.out_r, child.res_r, child.phase_r, child.pidfd):
            if fd >= 0:
                os.close(fd)
    return _reply(answer, child.pid, status, len(left), started), spare


def _collect(child: _Child, answer: _Answer, deadline: float, max_output: int) -> None:
    """Read output and answer until the child answers, exits, overflows or runs out of time."""
    out_r, res_r, output, result = child.out_r, child.res_r, answer.output, answer.result
    poller = select.poll()
    for fd in (out_r, res_r, child.pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, res_r}
    while not answer.exited and not answer.answered:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            answer.timed_out = True
            break
        for fd, _event in poller.poll(max(1, math.ceil(remaining * 1000))):
            if fd == child.pidfd:
                answer.exited = True  # reaped in _end_check: until then its pid stays reserved
                continue
            if fd not in open_fds:
                continue
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                answer.answered = fd == res_r and bool(result)
            elif fd == out_r:
                output.add(chunk)
                answer.output_exceeded = output.total > max_output
            else:
                result += chunk
                answer.result_too_big = len(result) > MAX_RESULT_BYTES
        if answer.output_exceeded or answer.result_too_big:
            break
    if out_r in open_fds and not answer.output_exceeded:
        _drain(out_r, output, max(0, max_output + 1 - output.total))
        answer.output_exceeded = output.total > max_output
    if res_r in open_fds and not answer.result_too_big:
        _drain(res_r, result, MAX_RESULT_BYTES + 1 - len(result))
        answer.result_too_big = len(result) > MAX_RESULT_BYTES


def _reply(
    answer: _Answer, pid: int, status: int, leftovers: int, started: float
) -> dict[str, Any]:
    """The helper's report of one check, the child's own answer decoded inside it."""
    reply: dict[str, Any] = {
        "child_pid": pid,
        "timed_out": answer.timed_out,
        "output_exceeded": answer.output_exceeded,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "output_tail": bytes(answer.output.data).decode(errors="replace"),
        "output_bytes": answer.output.total,
        "helper_ms": (time.perf_counter() - started) * 1000,
        "phase": phase_name(bytes(answer.phases)),
        "leftovers": leftovers,
        "result": None,
        "result_error": None,
    }
    if answer.result_too_big:
        reply["result_error"] = f"the child's answer was larger than {MAX_RESULT_BYTES} bytes"
    elif answer.result:
        try:
            reply["result"] = decode_message(bytes(answer.result))
        except ValueError as exc:
            reply["result_error"] = f"the child's answer was not valid JSON: {exc}"
    return reply


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _read_request(fd: int) -> dict[str, Any] | None:
    head = _read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"request of {size} bytes is larger than {MAX_MESSAGE_BYTES}")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return decode_message(body)


def _take_protocol_fds() -> tuple[int, int]:
    """Move the protocol pipes off fds 0 and 1 so stray prints cannot corrupt a reply."""
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return proto_in, proto_out


def _wait_for_request(proto_in: int, reaper: _Reaper, spare: _Child | None) -> None:
    """Block until a request arrives, reaping answered children (and anything they started
    after answering) meanwhile."""
    while True:
        poller = select.poll()
        poller.register(proto_in, select.POLLIN)
        for pidfd in reaper.pidfds:
            poller.register(pidfd, select.POLLIN)
        ready = [fd for fd, _event in poller.poll()]
        reaped = [fd for fd in ready if fd != proto_in]
        for fd in reaped:
            reaper.reap(fd)
        if reaped:
            sweep(reaper.pids() | ({spare.pid} if spare is not None else set()))
        if proto_in in ready:
            return


def main() -> int:
    proto_in, proto_out = _take_protocol_fds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.perf_counter()
    try:
        import ctypes  # noqa: F401  - used by every child (see sandbox_child)

        import planforge.contract  # noqa: F401  - the preload plugins benefit from
    except BaseException as exc:
        write_all(proto_out, encode_message({"ready": False, "error": repr(exc)}))
        return 1
    subreaper = become_subreaper()
    gc.collect()
    gc.freeze()  # keep preloaded objects' pages shared with forked children
    protocol_fds = (proto_in, proto_out)
    reaper = _Reaper()
    spare: _Child | None = _Child(protocol_fds)
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "preload_ms": (time.perf_counter() - started) * 1000,
        "subreaper": subreaper,
    }
    write_all(proto_out, encode_message(ready))
    try:
        while True:
            _wait_for_request(proto_in, reaper, spare)
            try:
                request = _read_request(proto_in)
            except (ValueError, OSError) as exc:
                with contextlib.suppress(OSError):
                    write_all(proto_out, encode_message({"fatal": f"bad request: {exc}"}))
                return 2
            if request is None:
                return 0
            if spare is not None and not spare.alive():
                spare.discard()
                spare = None
            child = spare if spare is not None else _Child((*protocol_fds, *sorted(reaper.pidfds)))
            spare = None
            try:
                reply, spare = _run_child(child, request, reaper, protocol_fds)
            except Exception as exc:
                reply = {"helper_error": f"{type(exc).__name__}: {exc}"}
                _kill_group(child.pid)
                sweep(reaper.pids())
            try:
                write_all(proto_out, encode_message(reply))
            except BrokenPipeError:
                return 0
    finally:
        if spare is not None:
            spare.discard()
        reaper.reap_all()
        sweep(())


if __name__ == "__main__":
    sys.exit(main())
