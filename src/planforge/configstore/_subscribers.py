"""Listeners of committed changes: told after the commit, never able to undo it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Final

from planforge.configstore._records import ConfigChange
from planforge.configstore.errors import StoreError
from planforge.logs import get_logger

__all__ = ["MAX_SUBSCRIBERS", "Subscriber", "Subscribers"]

MAX_SUBSCRIBERS: Final = 256

Subscriber = Callable[[ConfigChange], None]

_log = get_logger("configstore")


class Subscribers:
    """The callbacks of one store; `emit` runs after a change's transaction has committed."""

    def __init__(self) -> None:
        self._callbacks: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` after every committed change; returns the function that stops it."""
        with self._lock:
            if len(self._callbacks) >= MAX_SUBSCRIBERS:
                raise StoreError(
                    f"This store already has {MAX_SUBSCRIBERS} subscribers; unsubscribe the "
                    "ones you no longer need.",
                    limit=MAX_SUBSCRIBERS,
                )
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def emit(self, change: ConfigChange) -> None:
        with self._lock:
            callbacks = tuple(self._callbacks)
        for callback in callbacks:
            try:
                callback(change)
            except Exception:
                # the change is committed; a failing listener must not turn it into an error
                _log.exception(
                    "config change subscriber failed",
                    kind=change.kind,
                    subscriber=getattr(callback, "__qualname__", repr(callback)),
                )
