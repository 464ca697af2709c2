"""The in-process event bus: one process, per-user sequences, replay and backpressure."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from itertools import islice

from planforge.logs import get_logger
from planforge.runtime._context import check_id
from planforge.runtime._delivery import (
    EventCallback,
    Subscriber,
    Unsubscribe,
    check_since,
)
from planforge.runtime._events import RuntimeEvent
from planforge.runtime.errors import EventBusError

__all__ = ["InProcessEventBus"]

_log = get_logger("runtime.bus")
_FAILURE_LOG_EVERY = 1000


class _UserStream:
    """One user's state: sequence, ring buffer, subscribers, and events awaiting delivery.

    `pending` holds (event, subscribers-at-publish-time) in publish order; whoever holds
    `delivering` drains it, so one user's events are delivered in order even when several
    threads publish for that user at once, and callbacks never run under the bus lock.
    """

    __slots__ = (
        "buffer",
        "delivered",
        "deliverer",
        "delivering",
        "failures",
        "pending",
        "sequence",
        "subscribers",
    )

    def __init__(self, buffer_size: int, first_sequence: int) -> None:
        self.sequence = first_sequence
        self.buffer: deque[RuntimeEvent] = deque(maxlen=buffer_size)
        self.subscribers: tuple[Subscriber, ...] = ()
        self.pending: deque[tuple[RuntimeEvent, tuple[Subscriber, ...]]] = deque()
        self.delivering = threading.Lock()
        self.deliverer = 0
        self.delivered = 0
        self.failures = 0

    def after(self, since: int) -> list[RuntimeEvent]:
        """Buffered events with user_sequence > since; none when `since` is ahead of the stream
        (the caller tells the client the current sequence: see `last_sequence`)."""
        if since >= self.sequence:
            return []
        first = self.sequence - len(self.buffer) + 1
        return list(islice(self.buffer, max(0, since - first + 1), None))

    def idle(self) -> bool:
        return not self.subscribers and not self.pending and not self.delivering.locked()


class InProcessEventBus:
    """A thread-safe bus for one process.

    Publishing takes the bus lock once (stamp, buffer, queue for delivery) and calls the
    subscribers outside it, in the publishing thread, or in whichever thread is already
    delivering that user's events. A publisher that gets more than `max_pending` events ahead
    of a slow subscriber waits for it (backpressure) instead of dropping events.

    State is bounded: each user keeps at most `buffer_size` events, and at most `max_users`
    users are kept, least recently used first out; users with live subscribers are never
    evicted. An evicted user's next events continue above every sequence handed out before,
    so a reconnecting client never mistakes new events for ones it saw.
    """

    def __init__(
        self,
        buffer_size: int = 1000,
        max_users: int = 100_000,
        *,
        max_subscribers_per_user: int = 10_000,
        max_pending: int | None = None,
    ) -> None:
        for name, value in (
            ("buffer_size", buffer_size),
            ("max_users", max_users),
            ("max_subscribers_per_user", max_subscribers_per_user),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EventBusError(f"{name}={value!r} must be an integer >= 1", **{name: value})
        self.buffer_size = buffer_size
        self.max_users = max_users
        self.max_subscribers_per_user = max_subscribers_per_user
        self.max_pending = max(buffer_size, 1024) if max_pending is None else max(1, max_pending)
        self._lock = threading.Lock()
        self._users: OrderedDict[str, _UserStream] = OrderedDict()
        self._sequence_floor = 0
        self._published = 0
        self._evicted_users = 0
        self._evicted_delivered = 0
        self._evicted_failures = 0
        self._closed = False

    # -- publishing -------------------------------------------------------------------------

    def publish(self, event: RuntimeEvent) -> None:
        """Stamp `event` with the user's next sequence, buffer it, deliver it."""
        user_id = event.user_id
        with self._lock:
            if self._closed:
                raise EventBusError("the event bus is closed; create a new one", user_id=user_id)
            stream = self._users.get(user_id)
            if stream is None:
                stream = self._new_stream(user_id)
            else:
                self._users.move_to_end(user_id)
            sequence = stream.sequence + 1
            stream.sequence = sequence
            stamped = event.with_user_sequence(sequence)
            stream.buffer.append(stamped)
            self._published += 1
            subscribers = stream.subscribers
            if subscribers:
                stream.pending.append((stamped, subscribers))
        if subscribers:
            self._drain(user_id, stream)

    def _drain(self, user_id: str, stream: _UserStream) -> None:
        pending = stream.pending
        delivering = stream.delivering
        while True:
            if not delivering.acquire(blocking=False):
                # Someone else is delivering this user's events and will pick ours up; wait
                # for it only when far ahead of it (and never when it is this very thread).
                if len(pending) <= self.max_pending or stream.deliverer == threading.get_ident():
                    return
                delivering.acquire()
            stream.deliverer = threading.get_ident()
            delivered = failures = 0
            try:
                while pending:
                    try:
                        event, subscribers = pending.popleft()
                    except IndexError:  # pragma: no cover - only this thread pops
                        break
                    for subscriber in subscribers:
                        if subscriber.active:
                            try:
                                subscriber.callback(event)
                                delivered += 1
                            except Exception as exc:
                                failures += 1
                                self._log_failure(user_id, event, exc, stream.failures + failures)
            finally:
                stream.delivered += delivered
                stream.failures += failures
                stream.deliverer = 0
                delivering.release()
            # An event queued between our last look and the release would be stranded, since
            # its publisher saw the lock held: look again.
            if not pending:
                return

    @staticmethod
    def _log_failure(user_id: str, event: RuntimeEvent, exc: Exception, count: int) -> None:
        if count <= 10 or count % _FAILURE_LOG_EVERY == 0:
            _log.warning(
                "event subscriber raised; the event is dropped for that subscriber",
                user_id=user_id,
                event_type=event.type,
                run_id=event.run_id,
                failures=count,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _new_stream(self, user_id: str) -> _UserStream:
        """Create a user's stream (under the lock), evicting idle least-recent users first."""
        users = self._users
        attempts = 0
        while len(users) >= self.max_users and attempts < 16:
            attempts += 1
            oldest_id, oldest = next(iter(users.items()))
            if not oldest.idle():
                users.move_to_end(oldest_id)
                continue
            del users[oldest_id]
            self._sequence_floor = max(self._sequence_floor, oldest.sequence)
            self._evicted_users += 1
            self._evicted_delivered += oldest.delivered
            self._evicted_failures += oldest.failures
        stream = _UserStream(self.buffer_size, self._sequence_floor)
        users[user_id] = stream
        return stream

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(
        self, user_id: str, callback: EventCallback, *, since: int | None = None
    ) -> Unsubscribe:
        """Call `callback(event)` for each of `user_id`'s events; returns `unsubscribe()`.

        With `since=N`, the buffered events after user_sequence N come first, then live
        ones, in order, none twice (if another thread is delivering this user's events at
        that moment, it delivers the replay too, so it may finish after this returns).
        After `unsubscribe()` returns no further call starts (one already running may end).
        """
        check_id("user_id", user_id)
        check_since(since)
        subscriber = Subscriber(callback)
        with self._lock:
            if self._closed:
                raise EventBusError("the event bus is closed; create a new one", user_id=user_id)
            stream = self._users.get(user_id)
            if stream is None:
                stream = self._new_stream(user_id)
            else:
                self._users.move_to_end(user_id)
            if len(stream.subscribers) >= self.max_subscribers_per_user:
                raise EventBusError(
                    f"user {user_id!r} already has {len(stream.subscribers)} subscribers, the "
                    "limit; unsubscribe stale ones first",
                    user_id=user_id,
                    limit=self.max_subscribers_per_user,
                )
            stream.subscribers = (*stream.subscribers, subscriber)
            if since is not None:
                alone = (subscriber,)
                stream.pending.extend((event, alone) for event in stream.after(since))
            has_pending = bool(stream.pending)
        if has_pending:
            self._drain(user_id, stream)

        def unsubscribe() -> None:
            subscriber.active = False
            with self._lock:
                if subscriber in stream.subscribers:
                    stream.subscribers = tuple(s for s in stream.subscribers if s is not subscriber)

        return unsubscribe

    def replay(self, user_id: str, since: int = 0) -> list[RuntimeEvent]:
        """The buffered events of `user_id` with user_sequence > `since`, oldest first."""
        check_since(since)
        with self._lock:
            stream = self._users.get(user_id)
            return [] if stream is None else stream.after(since)

    # -- introspection ----------------------------------------------------------------------

    def last_sequence(self, user_id: str) -> int:
        """The last user_sequence handed out to `user_id` (0 if none is known)."""
        with self._lock:
            stream = self._users.get(user_id)
            return 0 if stream is None else stream.sequence

    def subscriber_count(self, user_id: str) -> int:
        with self._lock:
            stream = self._users.get(user_id)
            return 0 if stream is None else len(stream.subscribers)

    @property
    def published(self) -> int:
        return self._published

    @property
    def delivered(self) -> int:
        return self.metrics()["delivered"]

    @property
    def delivery_failures(self) -> int:
        return self.metrics()["delivery_failures"]

    def metrics(self) -> dict[str, int]:
        """Exact counters once publishing is quiet; costs one pass over the kept users."""
        with self._lock:
            streams = list(self._users.values())
            return {
                "published": self._published,
                "delivered": self._evicted_delivered + sum(s.delivered for s in streams),
                "delivery_failures": self._evicted_failures + sum(s.failures for s in streams),
                "users": len(streams),
                "subscribers": sum(len(s.subscribers) for s in streams),
                "evicted_users": self._evicted_users,
            }

    def close(self) -> None:
        """Stop every subscription and drop the buffers; later calls raise `EventBusError`."""
        with self._lock:
            self._closed = True
            for stream in self._users.values():
                for subscriber in stream.subscribers:
                    subscriber.active = False
                stream.subscribers = ()
                stream.buffer.clear()
