"""What one forked sandbox child does: confine itself, check one planner module, answer, exit.

The child is forked by the sandbox helper (`planforge.factory._sandbox_helper`) ahead of its
request, as a spare. When the request arrives it imports the module, looks the class up, reads
its metadata, instantiates it and runs its `self_test`. Before each of these phases it writes
the phase's number on a pipe to the helper, so a check that hangs can be reported by the phase
it hung in. Its answer is one JSON object on another pipe; then it `_exit`s.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import importlib.util
import json
import math
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from planforge.errors import SANDBOX_PHASES
from planforge.factory._importing import import_path

__all__ = ["PHASES", "TRACEBACK_TAIL_CHARS", "check", "child_main", "phase_name", "write_all"]

#: The phases of a check, in order; the child writes a phase's index before entering it.
PHASES = SANDBOX_PHASES
TRACEBACK_TAIL_CHARS = 4000
_READ_CHUNK = 65536
_PR_SET_PDEATHSIG = 1
_THREAD_POOL_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

Enter = Callable[[str], None]


def phase_name(marks: bytes) -> str | None:
    """The last phase the child entered, from the bytes it wrote on its phase pipe."""
    for mark in reversed(marks):
        if mark < len(PHASES):
            return PHASES[mark]
    return None


def _no_phase(_phase: str) -> None:
    return None


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
    """The answer for a check that failed in `stage` with `exc`."""
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
    return import_path(module_name, path)


def _resolve(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _defines_self_test(cls: type) -> bool:
    from planforge.contract import Planner

    method = getattr(cls, "self_test", None)
    return callable(method) and method is not Planner.self_test


def check(request: dict[str, Any], enter: Enter = _no_phase) -> dict[str, Any]:
    """Import, resolve, introspect and self-test one target; never raises.

    `enter(phase)` is called as each phase of `PHASES` begins.
    """
    from planforge.contract import METADATA_ATTRIBUTES

    started = time.perf_counter()
    enter("import")
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
    enter("class_lookup")
    try:
        cls = _resolve(module, qualname)
    except BaseException as exc:
        return _failure("resolve", exc, import_ms=import_ms)
    if not isinstance(cls, type):
        problem = TypeError(f"{qualname} is a {type(cls).__name__}, not a class")
        return _failure("resolve", problem, import_ms=import_ms)
    enter("metadata")
    metadata: dict[str, Any] = {}
    for attribute, default in METADATA_ATTRIBUTES.items():
        try:
            metadata[attribute] = _json_value(getattr(cls, attribute, default))
        except BaseException as exc:
            return _failure("metadata", exc, import_ms=import_ms, attribute=attribute)
    result["metadata"] = metadata
    if not request.get("instantiate", True):
        return result
    enter("instantiate")
    try:
        instance = cls()
    except BaseException as exc:
        return _failure("instantiate", exc, import_ms=import_ms, metadata=metadata)
    if not request.get("self_test", True):
        return result
    if not _defines_self_test(cls):
        result["self_test"] = "absent"
        return result
    enter("self_test")
    try:
        instance.self_test()
    except BaseException as exc:
        return _failure("self_test", exc, import_ms=import_ms, metadata=metadata)
    result["self_test"] = "passed"
    return result


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_to_eof(fd: int) -> bytes:
    chunks = bytearray()
    while chunk := os.read(fd, _READ_CHUNK):
        chunks += chunk
    return bytes(chunks)


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
    json.dumps(check(dry_run), separators=(",", ":"), allow_nan=False)
    importlib.invalidate_caches()
    resource.getrlimit(resource.RLIMIT_AS)


def _phase_writer(fd: int) -> Enter:
    def enter(phase: str) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, bytes((PHASES.index(phase),)))

    return enter


def child_main(
    req_r: int, out_w: int, res_w: int, phase_w: int, close: tuple[int, ...]
) -> NoReturn:
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
        request = json.loads(body)
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
        result = check(request, _phase_writer(phase_w))
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        try:
            answer = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            answer = json.dumps(_failure("report", exc)).encode()
        write_all(res_w, answer)
        os.close(res_w)  # EOF tells the helper the answer is complete
    except BaseException:
        code = 70  # EX_SOFTWARE: the sandbox itself failed in the child
        with contextlib.suppress(BaseException):
            write_all(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)
