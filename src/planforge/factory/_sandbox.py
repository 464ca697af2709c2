"""The isolated import check: a planner module is imported in a throwaway child before the main
process trusts it.

`Sandbox` keeps one small helper process (`planforge.factory._sandbox_helper`) that has
planforge's contract preloaded; each check forks a child from it, so a check costs a fork and a
pipe round trip instead of a fresh interpreter. The child imports the module under a memory
limit, resolves the planner class, reads its metadata, optionally instantiates it and runs its
`self_test`, and answers in JSON. A child that hangs is killed at the deadline; one that exits,
crashes, raises or floods its output is reported as a `SandboxImportError` carrying the reason,
exit code or signal and the tails of its traceback and output.

Processes left behind: a check must end with nothing it started still running. The helper is a
child subreaper, so it sees every process a check started (even after `setsid()` and a double
fork); a module that leaves any running after its import, class lookup, metadata or self-test
fails with "left N processes behind", and they are all killed and reaped (see
`planforge.factory._sandbox_helper`). A check that hangs is reported by the phase it hung in
(`SandboxTimeout.phase`).

Output policy: a module that prints more than `max_output_bytes` while being imported is killed
and rejected ("printed more than N bytes at import"), because importing it in the main process
would flood the main process's stdout and logs the same way.

The main process never imports the checked module. The sandbox guards against accidents (hangs,
crashes, exits), not against malice: the child runs with the helper's privileges.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from planforge.errors import SandboxError, SandboxImportError, SandboxTimeout
from planforge.factory._sandbox_helper import HEADER, MAX_MESSAGE_BYTES, decode_message
from planforge.logs import get_logger

__all__ = ["OUTPUT_TAIL_BYTES", "ImportTarget", "Sandbox", "SandboxReport", "validate_module_name"]

#: How much of a child's output a report keeps (its end, where the interesting part is).
OUTPUT_TAIL_BYTES = 4096
#: Time the helper may take to start and preload before it counts as broken.
HELPER_START_TIMEOUT_S = 60.0
#: Slack on top of the check's own timeout before the main process gives up on the helper.
REPLY_MARGIN_S = 5.0

_log = get_logger("sandbox")
_SRC_ROOT = str(Path(__file__).resolve().parents[2])


def _dotted_identifier(value: str) -> bool:
    return bool(value) and all(part.isidentifier() for part in value.split("."))


def validate_module_name(module: str) -> None:
    """Reject anything but a dotted Python identifier before any process sees it.

    Raises `SandboxImportError`; this keeps names such as `a/../b`, `x;rm -rf` or `$(cmd)` out
    of every import path and log line.
    """
    if not isinstance(module, str) or not _dotted_identifier(module):
        raise SandboxImportError(
            str(module),
            "the module name is not a dotted Python identifier (letters, digits, underscores "
            "and single dots only); fix the planner's entry point or file name",
        )


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """What to check: `module` (dotted name), the planner class's `qualname` (None to only
    import), the source `path` of a directory plugin (file or package directory; None to import
    `module` from the search path) and extra `search_path` entries put first on `sys.path`.
    `planner_name`, when known, only makes error messages name the planner.
    """

    module: str
    qualname: str | None = None
    path: str | None = None
    search_path: tuple[str, ...] = ()
    planner_name: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxReport:
    """The facts of one check. `check` only returns reports with `ok=True`; `probe` returns
    failures too, with `reason` saying what went wrong.

    `self_test` is "passed", "absent" (the class does not override `Planner.self_test`),
    "failed", or "skipped" (not asked for, not instantiated, or no class given). `import_ms` is
    the module's own import time measured in the child, `total_ms` the whole check as seen by
    the caller. `child_pid` is the forked child's pid (already reaped when the report exists).
    `phase` is the last phase the child entered (one of `planforge.errors.SANDBOX_PHASES`, None
    if it reached none) and `leftovers` how many processes it left running (all killed).
    """

    module: str
    ok: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    self_test: str = "skipped"
    import_ms: float = 0.0
    total_ms: float = 0.0
    output_tail: str = ""
    output_bytes: int = 0
    exit_code: int | None = None
    signal: int | None = None
    error_type: str | None = None
    traceback_tail: str = ""
    reason: str = ""
    timed_out: bool = False
    child_pid: int | None = None
    phase: str | None = None
    leftovers: int = 0


class _HelperDied(Exception):
    """The helper process vanished or broke the protocol; the sandbox restarts it."""


class _Helper:
    """One running helper process and the two pipes to it."""

    def __init__(self) -> None:
        started = time.perf_counter()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (_SRC_ROOT, env.get("PYTHONPATH", "")) if part
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "planforge.factory._sandbox_helper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal must not reach it
        )
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:  # pragma: no cover - both are PIPE above
            raise _HelperDied("the sandbox helper has no pipes")
        self._in = stdin.fileno()
        self._out = stdout.fileno()
        self._buffer = bytearray()
        try:
            ready = self.receive(time.monotonic() + HELPER_START_TIMEOUT_S)
        except _HelperDied:
            self.stop()
            raise
        if not ready.get("ready"):
            self.stop()
            raise _HelperDied(f"the sandbox helper failed to start: {ready.get('error')}")
        self.pid = int(ready["pid"])
        self.subreaper = bool(ready.get("subreaper"))
        self.start_ms = (time.perf_counter() - started) * 1000

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        data = memoryview(HEADER.pack(len(body)) + body)
        try:
            while data:
                data = data[os.write(self._in, data) :]
        except OSError as exc:
            raise _HelperDied(f"writing to the sandbox helper failed: {exc}") from None

    def _fill(self, size: int, deadline: float) -> None:
        """Read until the buffer holds `size` bytes; a reply usually arrives in one read."""
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._out], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._out, max(65536, size - len(self._buffer)))
            if not chunk:
                raise _HelperDied("the sandbox helper closed its pipe")
            self._buffer += chunk

    def receive(self, deadline: float) -> dict[str, Any]:
        self._fill(HEADER.size, deadline)
        (size,) = HEADER.unpack_from(self._buffer)
        if size > MAX_MESSAGE_BYTES:
            raise _HelperDied(f"the sandbox helper sent a {size}-byte message")
        end = HEADER.size + size
        self._fill(end, deadline)
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        try:
            return decode_message(body)
        except ValueError as exc:
            raise _HelperDied(f"the sandbox helper sent an unreadable message: {exc}") from None

    def stop(self, grace_s: float = 0.5) -> None:
        """Close its stdin (it exits on EOF), then kill it if it lingers, and reap it."""
        process = self.process
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _HelperSlot:
    """Holds the current helper; kept apart from `Sandbox` so cleanup never revives it."""

    __slots__ = ("helper",)

    def __init__(self) -> None:
        self.helper: _Helper | None = None

    def shutdown(self) -> None:
        helper, self.helper = self.helper, None
        if helper is not None:
            with contextlib.suppress(Exception):
                helper.stop()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sandbox:
    """Checks planner modules in forked children of a preloaded helper process.

    The helper starts on the first check and is restarted transparently if it dies. Checks are
    serialised by a lock, so one `Sandbox` may be shared by threads. The main process waits at
    most `timeout_s + reply_margin_s` for the helper's answer; a helper that misses it is killed
    (its child dies with it) and replaced. Close it (or use it as a
    context manager) to stop the helper; it is also stopped when the sandbox is collected and at
    interpreter exit.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 2.0,
        max_memory_mb: int = 1024,
        max_output_bytes: int = 65536,
        reply_margin_s: float = REPLY_MARGIN_S,
    ) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if max_memory_mb < 16:
            raise ValueError(f"max_memory_mb must be at least 16, got {max_memory_mb!r}")
        if max_output_bytes < 0:
            raise ValueError(f"max_output_bytes must be >= 0, got {max_output_bytes!r}")
        self.timeout_s = float(timeout_s)
        self.max_memory_mb = int(max_memory_mb)
        self.max_output_bytes = int(max_output_bytes)
        self.reply_margin_s = float(reply_margin_s)
        self._lock = threading.Lock()
        self._slot = _HelperSlot()
        self._closed = False
        self._helper_starts = 0
        self._helper_start_ms: float | None = None
        # Runs when the sandbox is collected, or at interpreter exit (finalize's atexit hook).
        self._finalizer = weakref.finalize(self, self._slot.shutdown)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the helper. Idempotent; a closed sandbox refuses further checks."""
        with self._lock:
            self._closed = True
            self._slot.shutdown()

    @property
    def helper_pid(self) -> int | None:
        """The running helper's pid, or None before the first check or after `close`."""
        helper = self._slot.helper
        return helper.pid if helper is not None else None

    @property
    def subreaper(self) -> bool | None:
        """Whether the running helper is a child subreaper (it then sees, counts and kills
        every process a check leaves behind); None before the first check or after `close`."""
        helper = self._slot.helper
        return helper.subreaper if helper is not None else None

    @property
    def helper_start_ms(self) -> float | None:
        """How long the last helper start took (spawn plus preload)."""
        return self._helper_start_ms

    @property
    def helper_starts(self) -> int:
        """How many times a helper was started (more than 1 means it died and was replaced)."""
        return self._helper_starts

    def start(self) -> None:
        """Start the helper now rather than on the first check (to keep that check fast)."""
        with self._lock:
            self._ensure_helper()

    def _ensure_helper(self) -> _Helper:
        if self._closed:
            raise RuntimeError("this Sandbox is closed; create a new one")
        helper = self._slot.helper
        if helper is not None and helper.alive():
            return helper
        if helper is not None:
            _log.warning("sandbox helper died; restarting it", pid=helper.pid)
            self._slot.shutdown()
        helper = _Helper()
        self._slot.helper = helper
        self._helper_starts += 1
        self._helper_start_ms = helper.start_ms
        _log.debug("sandbox helper started", pid=helper.pid, start_ms=round(helper.start_ms, 3))
        return helper

    # ------------------------------------------------------------------ checks

    def check(
        self, target: ImportTarget, *, self_test: bool = True, instantiate: bool = True
    ) -> SandboxReport:
        """Import `target` in a sandboxed child and return its report.

        Raises `SandboxTimeout` (naming the phase that hung) if the import, class lookup,
        metadata, instantiation and self-test do not finish within `timeout_s`, and
        `SandboxImportError` for every other failure, with the reason; a module that leaves
        processes running is one.
        """
        report = self.probe(target, self_test=self_test, instantiate=instantiate)
        if not report.ok:
            raise self._error_for(target, report)
        return report

    def probe(
        self, target: ImportTarget, *, self_test: bool = True, instantiate: bool = True
    ) -> SandboxReport:
        """Like `check`, but a plugin's failure comes back as a report with `ok=False`.

        Still raises `SandboxImportError` for a malformed target and when the sandbox itself
        cannot run (the helper died twice in a row).
        """
        self._validate(target)
        request = {
            "module": target.module,
            "qualname": target.qualname,
            "path": target.path,
            "search_path": list(target.search_path),
            "sys_path": [entry for entry in sys.path if isinstance(entry, str)],
            "timeout_s": self.timeout_s,
            "max_memory_mb": self.max_memory_mb,
            "max_output_bytes": self.max_output_bytes,
            "tail_bytes": OUTPUT_TAIL_BYTES,
            "self_test": self_test,
            "instantiate": instantiate,
        }
        with self._lock:
            started = time.perf_counter()
            reply = self._exchange(target.module, request)
            total_ms = (time.perf_counter() - started) * 1000
        return self._report_from(target, reply, total_ms)

    def _validate(self, target: ImportTarget) -> None:
        validate_module_name(target.module)
        if target.qualname is not None and not _dotted_identifier(target.qualname):
            raise SandboxImportError(
                target.module,
                f"the class name {target.qualname!r} is not a dotted Python identifier",
            )
        for entry in (target.path, *target.search_path):
            if entry is not None and (not isinstance(entry, str) or "\x00" in entry):
                raise SandboxImportError(target.module, f"the path {entry!r} is not valid")

    def _exchange(self, module: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request/reply with the helper, restarting it once if it died on the way."""
        failure = ""
        for attempt in (1, 2):
            try:
                helper = self._ensure_helper()
            except (_HelperDied, OSError) as exc:
                raise SandboxImportError(
                    module,
                    f"the sandbox helper could not start ({exc}); check the Python "
                    "environment, or set FACTORY_SANDBOX=0 to skip the isolated check",
                ) from None
            deadline = time.monotonic() + self.timeout_s + self.reply_margin_s
            try:
                helper.send(request)
                reply = helper.receive(deadline)
            except TimeoutError:
                self._slot.shutdown()
                waited = self.timeout_s + self.reply_margin_s
                raise SandboxImportError(
                    module,
                    f"the sandbox helper did not answer within {waited:g} s and was restarted; "
                    "retry, and report a bug if it keeps happening",
                ) from None
            except _HelperDied as exc:
                failure = str(exc)
                _log.warning("sandbox helper died during a check", module=module, attempt=attempt)
                self._slot.shutdown()
                continue
            if "helper_error" in reply or "fatal" in reply:
                failure = str(reply.get("helper_error") or reply.get("fatal"))
                self._slot.shutdown()
                continue
            return reply
        raise SandboxImportError(
            module,
            f"sandbox helper died twice while checking this module ({failure}); the module may "
            "kill its parent process at import",
        )

    def _report_from(
        self, target: ImportTarget, reply: dict[str, Any], total_ms: float
    ) -> SandboxReport:
        result: dict[str, Any] = reply.get("result") or {}
        timed_out = bool(reply.get("timed_out"))
        exit_code: int | None = reply.get("exit_code")
        signal_number: int | None = reply.get("signal")
        ok = bool(result.get("ok")) and not timed_out and not reply.get("output_exceeded")
        ok = ok and exit_code == 0 and signal_number is None
        leftovers = int(reply.get("leftovers") or 0)
        reason = "" if ok else self._reason(target, reply, result)
        if leftovers:
            reason = self._leftover_reason(leftovers, reason)
        child_exit = result.get("exit_code")
        if result.get("error_type") == "SystemExit":
            exit_code = child_exit if isinstance(child_exit, int) else 1
        traceback_tail = str(result.get("traceback_tail", ""))
        output_tail = str(reply.get("output_tail", ""))
        if signal_number is not None and "Fatal Python error" in output_tail:
            traceback_tail = output_tail[output_tail.index("Fatal Python error") :]
        self_test = str(result.get("self_test", "skipped"))
        if result.get("stage") == "self_test":
            self_test = "failed"
        return SandboxReport(
            module=target.module,
            ok=ok and not leftovers,
            metadata=dict(result.get("metadata") or {}),
            self_test=self_test,
            import_ms=float(result.get("import_ms") or 0.0),
            total_ms=total_ms,
            output_tail=output_tail,
            output_bytes=int(reply.get("output_bytes", 0)),
            exit_code=exit_code,
            signal=signal_number,
            error_type=result.get("error_type"),
            traceback_tail=traceback_tail,
            reason=reason,
            timed_out=timed_out,
            child_pid=reply.get("child_pid"),
            phase=reply.get("phase"),
            leftovers=leftovers,
        )

    def _reason(self, target: ImportTarget, reply: dict[str, Any], result: dict[str, Any]) -> str:
        limit = f"exceeded FACTORY_SANDBOX_MAX_MEMORY_MB={self.max_memory_mb}"
        if reply.get("timed_out"):
            return self._timeout(target, reply.get("phase")).reason
        if reply.get("output_exceeded"):
            return (
                f"printed more than {self.max_output_bytes} bytes at import; it would flood the "
                "main process's output the same way. Remove the prints or raise "
                "FACTORY_SANDBOX_MAX_OUTPUT_BYTES"
            )
        signal_number = reply.get("signal")
        if signal_number is not None:
            text = f"killed by signal {signal_number} ({_signal_name(signal_number)})"
            if signal_number == signal.SIGSEGV:
                text += ", a segmentation fault in native code"
            if signal_number in (signal.SIGKILL, signal.SIGABRT):
                text += f"; it may have {limit}"
            return text
        if result:
            return self._failure_reason(target, result, limit)
        if reply.get("result_error"):
            return str(reply["result_error"])
        code = reply.get("exit_code")
        return (
            f"the process exited with code {code} during import without reporting "
            "(os._exit or a fatal interpreter error)"
        )

    def _failure_reason(self, target: ImportTarget, result: dict[str, Any], limit: str) -> str:
        stage = result.get("stage")
        error_type = result.get("error_type", "")
        message = result.get("message", "")
        described = f"{error_type}: {message}" if message else str(error_type)
        if error_type == "MemoryError":
            return f"{limit} (MemoryError during {stage})"
        if error_type == "SystemExit":
            return f"called sys.exit({result.get('exit_code')!r}) during {stage}"
        if stage == "import" and error_type in ("SyntaxError", "IndentationError", "TabError"):
            where = f"{result.get('filename')}, line {result.get('lineno')}"
            return f"{error_type} in {where}: {message}"
        if stage == "import":
            return f"raised {described} at import"
        if stage == "resolve":
            return f"class {target.qualname!r} not found in module {target.module!r} ({described})"
        if stage == "metadata":
            return f"metadata attribute {result.get('attribute')!r} is not JSON-able: {message}"
        if stage == "instantiate":
            return f"instantiating {target.qualname} failed: {described}"
        if stage == "self_test":
            return f"self_test failed: {described}"
        return f"the sandboxed check failed ({stage}): {described}"

    @staticmethod
    def _leftover_reason(count: int, reason: str) -> str:
        processes = "process" if count == 1 else "processes"
        if reason:
            return f"{reason}; it also left {count} {processes} behind (killed)"
        return (
            f"left {count} {processes} behind: still running when the check ended, now killed. "
            "A planner must not leave processes running after its import, class lookup, "
            "metadata or self_test; wait for the ones it starts, or start them in plan()"
        )

    def _timeout(self, target: ImportTarget, phase: str | None) -> SandboxTimeout:
        return SandboxTimeout(
            target.module,
            self.timeout_s,
            target.planner_name,
            phase=phase,
            qualname=target.qualname,
        )

    def _error_for(self, target: ImportTarget, report: SandboxReport) -> SandboxError:
        error: SandboxError
        if report.timed_out:
            error = self._timeout(target, report.phase)
        else:
            error = SandboxImportError(
                report.module,
                report.reason,
                exit_code=report.exit_code,
                signal=report.signal,
                traceback_tail=report.traceback_tail,
                output_tail=report.output_tail,
                planner_name=target.planner_name,
            )
        error.context["child_pid"] = report.child_pid
        error.context["error_type"] = report.error_type
        error.context["leftovers"] = report.leftovers
        return error
