"""What both buses share: subscriber records, the `since` check, and delivery to callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from planforge.logs import get_logger
from planforge.runtime._events import RuntimeEvent
from planforge.runtime.errors import EventBusError

__all__ = ["EventCallback", "Subscriber", "Unsubscribe", "check_since", "deliver"]

EventCallback = Callable[[RuntimeEvent], object]
Unsubscribe = Callable[[], None]

_log = get_logger("runtime.bus")


def check_since(since: int | None) -> None:
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise EventBusError(
            f"since={since!r} is not a user sequence number; pass the last user_sequence "
            "the client saw (an integer >= 0) or None for live events only",
            since=since,
        )


class Subscriber:
    __slots__ = ("active", "callback")

    def __init__(self, callback: EventCallback) -> None:
        self.callback = callback
        self.active = True


def deliver(user_id: str, event: RuntimeEvent, subscribers: Iterable[Subscriber]) -> int:
    """Call each active subscriber; return how many raised (they never stop the others)."""
    failures = 0
    for subscriber in subscribers:
        if subscriber.active:
            try:
                subscriber.callback(event)
            except Exception as exc:
                failures += 1
                _log.warning(
                    "event subscriber raised; the event is dropped for it",
                    user_id=user_id,
                    event_type=event.type,
                    error=f"{type(exc).__name__}: {exc}",
                )
    return failures
