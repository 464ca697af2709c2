"""The sandbox helper process: preloads planforge's contract once, then forks one child per check.

Run as `python -m planforge.factory.sandbox_helper` by `planforge.factory.sandbox.Sandbox`.
Forking from a warm process costs about a millisecond, where a fresh interpreter costs tens of
milliseconds before the plugin's own import even starts, and plugins (which subclass
`Planner`) find pydantic already imported.

Protocol: each message is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON, requests on the helper's stdin and replies on its stdout. The helper first sends
`{"ready": true, "pid": ..., "preload_ms": ...}` (or `{"ready": false, "error": ...}`), then
answers each request with the facts of one child's run; it exits when its stdin closes. Judging
those facts (timeout, crash, exception...) is the parent's job.

Latency: the next child (a "spare") is forked while the current one imports, and waits for its
request with its copy-on-write faults already taken; a child that has answered is reaped while
the helper waits for work, not before the reply.

Each child is its own process group (killed as a group, so processes it spawned go too) and is
SIGKILLed by the kernel if the helper dies. A grandchild that leaves the group (setsid) escapes.
This is isolation for resilience, not a security boundary: the child runs the plugin's code with
the helper's privileges.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import importlib.util
import json
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback
from typing import Any, NoReturn

__all__ = ["HEADER", "decode_message", "encode_message", "main"]

#: Length prefix of every message.
HEADER = struct.Struct(">I")
#: Largest message either side accepts; a bigger one means a broken peer.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Largest child result the helper accepts (metadata plus a traceback tail).
MAX_RESULT_BYTES = 1024 * 1024
TRACEBACK_TAIL_CHARS = 4000
_READ_CHUNK = 65536


def encode_message(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return HEADER.pack(len(body)) + body


def decode_message(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- the child side


def _tail(text: str, limit: int = TRACEBACK_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _json_value(value: Any) -> Any:
    """`value` as plain JSON (tuples and sets become lists); raises TypeError if it cannot be."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise TypeError(f"{value!r} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_json_value(item) for item in value]
        if not all(isinstance(item, str) for item in items):
            raise TypeError("a set must hold only strings to have a stable order")
        return sorted(items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            if not isinstance(key, str):
                raise TypeError(f"dict key {key!r} is not a string")
            out[key] = _json_value(value[key])
        return out
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _failure(stage: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    text = "".join(traceback.format_exception(exc))
    result: dict[str, Any] = {
        "ok": False,
        "stage": stage,
        "error_type": type(exc).__name__,
        "message": _tail(str(exc), 1000),
        "traceback_tail": _tail(text),
    }
    if isinstance(exc, SystemExit):
        code = exc.code
        result["exit_code"] = code if isinstance(code, int) or code is None else str(code)
    if isinstance(exc, SyntaxError):
        result["filename"] = exc.filename
        result["lineno"] = exc.lineno
        result["message"] = exc.msg
    result.update(extra)
    return result


def _import_target(request: dict[str, Any]) -> Any:
    module_name: str = request["module"]
    path: str | None = request.get("path")
    if path is None:
        return importlib.import_module(module_name)
    location = path
    search_locations: list[str] | None = None
    if os.path.isdir(path):
        location = os.path.join(path, "__init__.py")
        search_locations = [path]
    spec = importlib.util.spec_from_file_location(
        module_name, location, submodule_search_locations=search_locations
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a module from {path!r}", name=module_name, path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _resolve(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _defines_self_test(cls: type) -> bool:
    from planforge.contract import Planner

    method = getattr(cls, "self_test", None)
    return callable(method) and method is not Planner.self_test


def _check(request: dict[str, Any]) -> dict[str, Any]:
    """Import, resolve, introspect and self-test one target; never raises."""
    from planforge.contract import METADATA_ATTRIBUTES

    started = time.perf_counter()
    try:
        module = _import_target(request)
    except BaseException as exc:
        return _failure("import", exc, import_ms=(time.perf_counter() - started) * 1000)
    import_ms = (time.perf_counter() - started) * 1000
    result: dict[str, Any] = {
        "ok": True,
        "import_ms": import_ms,
        "metadata": {},
        "self_test": "skipped",
    }
    qualname: str | None = request.get("qualname")
    if not qualname:
        return result
    try:
        cls = _resolve(module, qualname)
    except BaseException as exc:
        return _failure("resolve", exc, import_ms=import_ms)
    if not isinstance(cls, type):
        problem = TypeError(f"{qualname} is a {type(cls).__name__}, not a class")
        return _failure("resolve", problem, import_ms=import_ms)
    metadata: dict[str, Any] = {}
    for attribute, default in METADATA_ATTRIBUTES.items():
        try:
            metadata[attribute] = _json_value(getattr(cls, attribute, default))
        except BaseException as exc:
            return _failure("metadata", exc, import_ms=import_ms, attribute=attribute)
    result["metadata"] = metadata
    if not request.get("instantiate", True):
        return result
    try:
        instance = cls()
    except BaseException as exc:
        return _failure("instantiate", exc, import_ms=import_ms, metadata=metadata)
    if not request.get("self_test", True):
        return result
    if not _defines_self_test(cls):
        result["self_test"] = "absent"
        return result
    try:
        instance.self_test()
    except BaseException as exc:
        return _failure("self_test", exc, import_ms=import_ms, metadata=metadata)
    result["self_test"] = "passed"
    return result


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_to_eof(fd: int) -> bytes:
    chunks = bytearray()
    while chunk := os.read(fd, _READ_CHUNK):
        chunks += chunk
    return bytes(chunks)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the helper dies, so a hung check never outlives it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() == 1:  # the helper died before prctl took effect
        os._exit(0)


def _warm_up() -> None:
    """Touch what every check touches while the spare waits, so copy-on-write faults and lazy
    imports happen off the critical path."""
    dry_run = {"module": "planforge.contract", "qualname": "Planner", "self_test": False}
    json.dumps(_check(dry_run), separators=(",", ":"), allow_nan=False)
    importlib.invalidate_caches()
    resource.getrlimit(resource.RLIMIT_AS)


_THREAD_POOL_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _child_main(req_r: int, out_w: int, res_w: int, close: tuple[int, ...]) -> NoReturn:
    """Runs in the forked child: wait for a request, confine, check, report, `_exit`.

    The child is forked ahead of its request (a spare), so the fork is off the critical path.
    """
    code = 0
    try:
        with contextlib.suppress(PermissionError):
            os.setpgid(0, 0)
        for fd in close:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
        faulthandler.enable(file=sys.stderr, all_threads=False)
        _die_with_parent()
        _warm_up()
        body = _read_to_eof(req_r)
        os.close(req_r)
        if not body:  # the helper is going away without a job for this spare
            os._exit(0)
        request = decode_message(body)
        limit = int(request["max_memory_mb"]) * 1024 * 1024
        # Numeric libraries size their thread pools (and reserve address space per thread) by
        # the core count; one thread is plenty for an import check and keeps big machines
        # inside the address-space limit. A value the user set is left alone.
        for variable in _THREAD_POOL_VARIABLES:
            os.environ.setdefault(variable, "1")
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path[:] = [*request.get("search_path", ()), *request.get("sys_path", sys.path)]
        importlib.invalidate_caches()
        result = _check(request)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        try:
            answer = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            answer = json.dumps(_failure("report", exc)).encode()
        _write_all(res_w, answer)
        os.close(res_w)  # EOF tells the helper the answer is complete
    except BaseException:
        code = 70  # EX_SOFTWARE: the sandbox itself failed in the child
        with contextlib.suppress(BaseException):
            _write_all(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)


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

    __slots__ = ("out_r", "pid", "pidfd", "req_w", "res_r")

    def __init__(self, inherited: tuple[int, ...]) -> None:
        """Fork a spare; `inherited` are the helper's fds the spare must close."""
        req_r, self.req_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which always _exits
            _child_main(req_r, out_w, res_w, (*inherited, self.req_w, self.out_r, self.res_r))
        self.pid = pid
        for fd in (req_r, out_w, res_w):
            os.close(fd)
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpgid(pid, pid)  # also done by the child; whoever runs first wins the race
        self.pidfd = os.pidfd_open(pid)

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
        for fd in (self.req_w, self.out_r, self.res_r):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Reaper:
    """Children that answered and are exiting; reaped while the helper waits for work."""

    def __init__(self) -> None:
        self.pidfds: dict[int, int] = {}

    def add(self, pid: int, pidfd: int) -> None:
        self.pidfds[pidfd] = pid

    def reap(self, pidfd: int, *, block: bool) -> None:
        pid = self.pidfds.pop(pidfd)
        with contextlib.suppress(ChildProcessError):
            if not block:
                _kill_group(pid)  # it lingers after answering: no more waiting
            os.waitpid(pid, 0)
        _kill_group(pid)  # grandchildren left behind in its group
        os.close(pidfd)

    def reap_all(self) -> None:
        for pidfd in sorted(self.pidfds):
            self.reap(pidfd, block=False)


def _run_child(
    child: _Child, request: dict[str, Any], reaper: _Reaper, protocol_fds: tuple[int, ...]
) -> tuple[dict[str, Any], _Child | None]:
    """Hand `request` to `child` and collect its answer; also forks the next spare meanwhile."""
    timeout_s = float(request["timeout_s"])
    max_output = int(request["max_output_bytes"])
    output = _Tail(int(request["tail_bytes"]))
    result = bytearray()
    pid = child.pid
    out_r, res_r, pidfd = child.out_r, child.res_r, child.pidfd
    started = time.perf_counter()
    deadline = started + timeout_s
    with contextlib.suppress(BrokenPipeError):  # a dead spare: its status below says how
        _write_all(child.req_w, json.dumps(request, separators=(",", ":")).encode())
    os.close(child.req_w)
    # Fork the next spare now, while this child imports: on a multi-core machine the fork
    # overlaps the check instead of delaying the next request.
    spare: _Child | None = None
    with contextlib.suppress(OSError):
        spare = _Child((*protocol_fds, out_r, res_r, pidfd, *sorted(reaper.pidfds)))
    timed_out = output_exceeded = result_too_big = answered = False
    status: int | None = None
    poller = select.poll()
    for fd in (out_r, res_r, pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, res_r}
    try:
        while status is None and not answered:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                timed_out = True
                break
            events = poller.poll(max(1, math.ceil(remaining * 1000)))
            for fd, _event in events:
                if fd == pidfd:
                    _, status = os.waitpid(pid, 0)
                    continue
                if fd not in open_fds:
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    answered = fd == res_r and bool(result)
                elif fd == out_r:
                    output.add(chunk)
                    output_exceeded = output.total > max_output
                else:
                    result += chunk
                    result_too_big = len(result) > MAX_RESULT_BYTES
            if output_exceeded or result_too_big:
                break
        if out_r in open_fds and not output_exceeded:
            _drain(out_r, output, max(0, max_output + 1 - output.total))
            output_exceeded = output.total > max_output
        if res_r in open_fds and not result_too_big:
            _drain(res_r, result, MAX_RESULT_BYTES + 1 - len(result))
            result_too_big = len(result) > MAX_RESULT_BYTES
        if answered and not output_exceeded and not result_too_big:
            reaper.add(pid, pidfd)  # it is exiting on its own; reap it off the critical path
            pidfd = -1
            status = 0
        elif status is None:
            _kill_group(pid)
            _, status = os.waitpid(pid, 0)
        else:
            _kill_group(pid)  # grandchildren left behind in the child's group
    finally:
        for fd in (out_r, res_r, pidfd):
            if fd >= 0:
                os.close(fd)
    reply: dict[str, Any] = {
        "child_pid": pid,
        "timed_out": timed_out,
        "output_exceeded": output_exceeded,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "output_tail": bytes(output.data).decode(errors="replace"),
        "output_bytes": output.total,
        "helper_ms": (time.perf_counter() - started) * 1000,
        "result": None,
        "result_error": None,
    }
    if result_too_big:
        reply["result_error"] = f"the child's answer was larger than {MAX_RESULT_BYTES} bytes"
    elif result:
        try:
            reply["result"] = decode_message(bytes(result))
        except ValueError as exc:
            reply["result_error"] = f"the child's answer was not valid JSON: {exc}"
    return reply, spare


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


def _wait_for_request(proto_in: int, reaper: _Reaper) -> None:
    """Block until a request arrives, reaping answered children meanwhile."""
    while True:
        poller = select.poll()
        poller.register(proto_in, select.POLLIN)
        for pidfd in reaper.pidfds:
            poller.register(pidfd, select.POLLIN)
        ready = [fd for fd, _event in poller.poll()]
        for fd in ready:
            if fd != proto_in:
                reaper.reap(fd, block=True)
        if proto_in in ready:
            return


def main() -> int:
    proto_in, proto_out = _take_protocol_fds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.perf_counter()
    try:
        import ctypes  # noqa: F401  - used by every child (see _die_with_parent)

        import planforge.contract  # noqa: F401  - the preload plugins benefit from
    except BaseException as exc:
        _write_all(proto_out, encode_message({"ready": False, "error": repr(exc)}))
        return 1
    gc.collect()
    gc.freeze()  # keep preloaded objects' pages shared with forked children
    protocol_fds = (proto_in, proto_out)
    reaper = _Reaper()
    spare: _Child | None = _Child(protocol_fds)
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "preload_ms": (time.perf_counter() - started) * 1000,
    }
    _write_all(proto_out, encode_message(ready))
    try:
        while True:
            _wait_for_request(proto_in, reaper)
            try:
                request = _read_request(proto_in)
            except (ValueError, OSError) as exc:
                with contextlib.suppress(OSError):
                    _write_all(proto_out, encode_message({"fatal": f"bad request: {exc}"}))
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
            try:
                _write_all(proto_out, encode_message(reply))
            except BrokenPipeError:
                return 0
    finally:
        if spare is not None:
            spare.discard()
        reaper.reap_all()


if __name__ == "__main__":
    sys.exit(main())
