"""The guard's worker threads, and the calls and batches of calls handed to them.

A caller waits on a plain lock the worker releases when a call ends (far cheaper than a
`Future`). A `Batch` is a stage's calls run one after another on one worker: the caller
reads each result in order as it ends, so a stage of many short modules costs one thread
hop, not one per module, while each module keeps its own timeout.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from planforge.errors import PlannerError

__all__ = ["Batch", "Call", "Flight", "ModuleCall", "WorkerPool"]


class ModuleCall(NamedTuple):
    """One module call for `ModuleGuard.call_each`: `fn(*args)`, or `default` if it fails."""

    module_key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    default: Any
    operation: str = "call"
    run_id: str = ""


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class Call:
    """One call handed to a worker: the caller waits on `done`."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = _held_lock()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.release()

    def wait(self, timeout: float) -> bool:
        """Whether the call ended within `timeout` seconds."""
        return self.done.acquire(timeout=max(0.0, timeout))


class Batch:
    """Calls run in order on one worker. `None` marks a call the caller skips.

    Before each call the worker runs `check` (the run's deadline, say); when it raises, the
    batch stops there and `stop` holds the exception for the caller. The worker also stops
    once the caller has called `cancel` (it gave up waiting) or a call raised a
    `BaseException` that is not an `Exception`. The worker claims each call under a lock
    before starting it, so `cancel` tells the caller exactly which calls the worker took.
    Start and end times come from `clock`, so a module's duration is its own, not the time
    the caller took to read it; waits use real time.
    """

    __slots__ = (
        "begun",
        "cancelled",
        "check",
        "claimed",
        "clock",
        "done",
        "ends",
        "errors",
        "fns",
        "lock",
        "results",
        "starts",
        "stop",
        "stopped_at",
    )

    def __init__(
        self,
        fns: Sequence[Callable[[], Any] | None],
        check: Callable[[], None] | None,
        clock: Callable[[], float],
    ) -> None:
        count = len(fns)
        self.fns = list(fns)
        self.check = check
        self.clock = clock
        self.done = [_held_lock() for _ in range(count)]
        self.starts: list[float] = [0.0] * count
        self.begun: list[float | None] = [None] * count  # real time, for the caller's waits
        self.ends: list[float] = [0.0] * count
        self.results: list[Any] = [None] * count
        self.errors: list[BaseException | None] = [None] * count
        self.stop: BaseException | None = None
        self.stopped_at = -1
        self.cancelled = False
        self.claimed = -1  # the last call the worker took
        self.lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self.fns)

    def run(self) -> None:
        for index, fn in enumerate(self.fns):
            if fn is None:
                continue
            with self.lock:
                if self.cancelled:
                    return
                self.claimed = index
            if not self._checked(index):
                return
            self.begun[index] = time.monotonic()
            self.starts[index] = self.clock()
            try:
                self.results[index] = fn()
            except BaseException as exc:
                self.errors[index] = exc
            finally:
                self.ends[index] = self.clock()
                self.done[index].release()
            if self.errors[index] is not None and not isinstance(self.errors[index], Exception):
                return

    def _checked(self, index: int) -> bool:
        if self.check is None:
            return True
        try:
            self.check()
        except BaseException as exc:
            self.stop, self.stopped_at = exc, index
            self.done[index].release()
            return False
        return True

    def cancel(self) -> int:
        """Stop the worker before its next call; the last call it took (it may be running)."""
        with self.lock:
            self.cancelled = True
            return self.claimed

    def wait(self, index: int, timeout: float) -> bool:
        """Whether call `index` ended (or the batch stopped before it) within `timeout`
        seconds of its start (of now, if it has not started yet)."""
        if self.done[index].acquire(blocking=False):
            return True
        begun = self.begun[index]
        remaining = timeout if begun is None else begun + timeout - time.monotonic()
        return self.done[index].acquire(timeout=max(0.0, remaining))


class WorkerPool:
    """A fixed set of daemon threads fed by one queue; callers bound the work in flight."""

    def __init__(self, size: int, prefix: str) -> None:
        self._size = size
        self._prefix = prefix
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Call:
        call = Call(fn)
        with self._lock:
            if self._closed:
                raise PlannerError("the module guard is closed; make a new one.", where="guard")
            if not self._threads:
                for index in range(self._size):
                    thread = threading.Thread(
                        target=self._work, name=f"{self._prefix}-{index}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)
            self._queue.put(call)
        return call

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            call.run()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)


class Flight:
    """One timed call's (or batch's) fate, read and written under the guard's lock."""

    __slots__ = ("abandoned", "finished")

    def __init__(self) -> None:
        self.finished = False
        self.abandoned = False
