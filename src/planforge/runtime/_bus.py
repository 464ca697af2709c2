"""Event buses: deliver each user's events to that user's subscribers only, in order.

The bus stamps every published event with a per-user `user_sequence` (1, 2, 3, ... per user)
and keeps the last `buffer_size` events of each user, so a subscriber that reconnects with
`since=N` first gets the buffered events after N, then live ones, with no gap and no
duplicate.

`InProcessEventBus` serves one process. `RedisEventBus` serves several processes sharing one
Redis: an event published in one process reaches subscribers in every other one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from planforge.runtime._delivery import EventCallback, Unsubscribe
from planforge.runtime._events import RuntimeEvent
from planforge.runtime._memory_bus import InProcessEventBus
from planforge.runtime._redis_bus import RedisEventBus

if TYPE_CHECKING:
    from planforge.runtime._settings import RuntimeSettings

__all__ = [
    "EventBus",
    "EventCallback",
    "InProcessEventBus",
    "RedisEventBus",
    "Unsubscribe",
    "event_bus_from_settings",
]


@runtime_checkable
class EventBus(Protocol):
    """What the engine and the server need from a bus."""

    def publish(self, event: RuntimeEvent) -> None: ...

    def subscribe(
        self, user_id: str, callback: EventCallback, *, since: int | None = None
    ) -> Unsubscribe: ...

    def replay(self, user_id: str, since: int = 0) -> list[RuntimeEvent]: ...

    def last_sequence(self, user_id: str) -> int: ...

    def metrics(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def event_bus_from_settings(settings: RuntimeSettings) -> InProcessEventBus | RedisEventBus:
    """Redis when PLANFORGE_REDIS_URL is set, else in-process; sized by the settings."""
    if settings.redis_url:
        return RedisEventBus(settings.redis_url, buffer_size=settings.event_buffer)
    return InProcessEventBus(buffer_size=settings.event_buffer, max_users=settings.max_users)
