"""Event buses: deliver each user's events to that user's subscribers only, in order.

The bus stamps every published event with a per-user `user_sequence` (1, 2, 3, ... per user)
and keeps the last `buffer_size` events of each user, so a subscriber that reconnects with
`since=N` first gets the buffered events after N, then live ones, with no gap and no
duplicate.

`InProcessEventBus` serves one process. `RedisEventBus` serves several processes sharing one
Redis: an event published in one process reaches subscribers in every other one.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from planforge.logs import get_logger
from planforge.runtime.context import check_id, new_run_id
from planforge.runtime.errors import EventBusError, InvalidEventError
from planforge.runtime.events import RuntimeEvent

if TYPE_CHECKING:
    from planforge.runtime.settings import RuntimeSettings

__all__ = [
    "EventBus",
    "EventCallback",
    "InProcessEventBus",
    "RedisEventBus",
    "event_bus_from_settings",
]

EventCallback = Callable[[RuntimeEvent], object]
Unsubscribe = Callable[[], None]

_log = get_logger("runtime.bus")
_FAILURE_LOG_EVERY = 1000


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


def _check_since(since: int | None) -> None:
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise EventBusError(
            f"since={since!r} is not a user sequence number; pass the last user_sequence "
            "the client saw (an integer >= 0) or None for live events only",
            since=since,
        )


class _Subscriber:
    __slots__ = ("active", "callback")

    def __init__(self, callback: EventCallback) -> None:
        self.callback = callback
        self.active = True


def _deliver(user_id: str, event: RuntimeEvent, subscribers: Iterable[_Subscriber]) -> int:
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
        self.subscribers: tuple[_Subscriber, ...] = ()
        self.pending: deque[tuple[RuntimeEvent, tuple[_Subscriber, ...]]] = deque()
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
        _check_since(since)
        subscriber = _Subscriber(callback)
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
        _check_since(since)
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


# -- Redis ----------------------------------------------------------------------------------

# One atomic step per event: append to the user's stream with the next id `0-<n>` (so the
# stream id *is* the user sequence), trim the stream exactly to the buffer size, refresh its
# retention, and notify listeners with "<n> <json>". Atomicity keeps notifications in order.
_PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '0-*', 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local seq = string.sub(id, 3)
redis.call('PUBLISH', ARGV[4], seq .. ' ' .. ARGV[2])
return seq
"""


class _RemoteUser:
    """A locally subscribed user, as seen by the listener thread (only it touches this)."""

    __slots__ = ("last", "live", "subscribers", "waiting")

    def __init__(self) -> None:
        self.subscribers: tuple[_Subscriber, ...] = ()
        self.waiting: list[tuple[_Subscriber, int | None, threading.Event]] = []
        self.last: int | None = None  # highest user_sequence delivered here; None = not yet
        self.live = False


class RedisEventBus:
    """A bus over Redis, for several processes serving the same users.

    Each user has a Redis stream `<prefix>:events:<user>` whose entry ids are `0-<n>`, so the
    stream id is the user sequence: XADD orders concurrent publishers from any process, the
    stream is the bounded replay buffer (trimmed exactly to `buffer_size`, expiring
    `retention_s` after the user's last event), and a pub/sub message on
    `<prefix>:notify:<user>` carries the event to listening processes.

    One listener thread per bus subscribes to the channels of users with local subscribers
    and calls them in order. A notification that skips a number (after a reconnect, say)
    makes it read the missing events from the stream, and duplicates are dropped, so local
    subscribers see each event once, in order. Callbacks run in the listener thread.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "planforge",
        buffer_size: int = 1000,
        retention_s: float = 86_400.0,
        poll_interval_s: float = 0.05,
        subscribe_timeout_s: float = 10.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the extra is installed in tests
            raise EventBusError(
                "RedisEventBus needs the redis package: pip install 'planforge[redis]'"
            ) from None
        check_id("prefix", prefix)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise EventBusError(f"buffer_size={buffer_size!r} must be an integer >= 1")
        self.prefix = prefix
        self.buffer_size = buffer_size
        self.retention_ms = max(1, int(retention_s * 1000))
        self.poll_interval_s = poll_interval_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.client_name = f"{prefix}-bus-{new_run_id()[:16]}"
        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
        )
        self._client: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            client_name=self.client_name,
        )
        self._script: Any = self._client.register_script(_PUBLISH_SCRIPT)
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, str, _Subscriber, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._users: dict[str, _RemoteUser] = {}
        self._pubsub: Any = None
        self._closed = False
        self._published = 0
        self._publish_errors = 0
        self._delivered = 0
        self._failures = 0
        self._reconnects = 0
        self._gap_fills = 0

    # -- keys -------------------------------------------------------------------------------

    def stream_key(self, user_id: str) -> str:
        return f"{self.prefix}:events:{user_id}"

    def channel(self, user_id: str) -> str:
        return f"{self.prefix}:notify:{user_id}"

    # -- publishing -------------------------------------------------------------------------

    def publish(self, event: RuntimeEvent) -> None:
        """Append `event` to its user's stream and notify listeners (one round trip)."""
        if self._closed:
            raise EventBusError("the event bus is closed; create a new one", user_id=event.user_id)
        user_id = check_id("user_id", event.user_id)
        body = event.to_json()
        try:
            self._script(
                keys=[self.stream_key(user_id)],
                args=[self.buffer_size, body, self.retention_ms, self.channel(user_id)],
            )
        except Exception as exc:
            with self._lock:
                self._publish_errors += 1
            raise EventBusError(
                f"could not publish to Redis ({type(exc).__name__}: {exc}); check that Redis "
                "is reachable at PLANFORGE_REDIS_URL",
                user_id=user_id,
            ) from exc
        with self._lock:
            self._published += 1

    # -- reading the streams ----------------------------------------------------------------

    def _read(self, user_id: str, after: int, upto: int | None = None) -> list[RuntimeEvent]:
        """Stream entries with after < user_sequence <= upto, oldest first."""
        entries = self._client.xrange(
            self.stream_key(user_id), min=f"(0-{after}", max="+" if upto is None else f"0-{upto}"
        )
        events = []
        for entry_id, fields in entries:
            sequence = int(entry_id.partition("-")[2])
            try:
                events.append(RuntimeEvent.from_json(fields["e"]).with_user_sequence(sequence))
            except (InvalidEventError, KeyError) as exc:
                _log.warning("skipping a malformed stream entry", user_id=user_id, error=str(exc))
        return events

    def _top(self, user_id: str) -> int:
        entries = self._client.xrevrange(self.stream_key(user_id), count=1)
        return int(entries[0][0].partition("-")[2]) if entries else 0

    def replay(self, user_id: str, since: int = 0) -> list[RuntimeEvent]:
        """The stream's events of `user_id` with user_sequence > `since`, oldest first."""
        check_id("user_id", user_id)
        _check_since(since)
        try:
            top = self._top(user_id)
            return [] if since >= top else self._read(user_id, since)
        except self._redis_errors as exc:
            raise EventBusError(
                f"could not read events from Redis ({type(exc).__name__}: {exc})",
                user_id=user_id,
            ) from exc

    def last_sequence(self, user_id: str) -> int:
        check_id("user_id", user_id)
        try:
            return self._top(user_id)
        except self._redis_errors as exc:
            raise EventBusError(
                f"could not read events from Redis ({type(exc).__name__}: {exc})",
                user_id=user_id,
            ) from exc

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(
        self, user_id: str, callback: EventCallback, *, since: int | None = None
    ) -> Unsubscribe:
        """Call `callback(event)` for each of `user_id`'s events, from any process.

        Returns once the subscription is live (events published afterwards are delivered);
        with `since=N` the stream's events after N come first. Raises `EventBusError` if
        Redis cannot be reached within `subscribe_timeout_s`.
        """
        check_id("user_id", user_id)
        _check_since(since)
        if self._closed:
            raise EventBusError("the event bus is closed; create a new one", user_id=user_id)
        subscriber = _Subscriber(callback)
        done = threading.Event()
        self._commands.put(("join", user_id, subscriber, (since, done)))
        self._ensure_listener()
        self._wake.set()

        def unsubscribe() -> None:
            if subscriber.active:
                subscriber.active = False
                self._commands.put(("leave", user_id, subscriber, None))
                self._wake.set()

        if threading.current_thread() is self._thread:
            return unsubscribe  # called from a callback: joins after the current event
        if not done.wait(self.subscribe_timeout_s):
            unsubscribe()
            raise EventBusError(
                f"could not subscribe to {user_id!r}'s events within "
                f"{self.subscribe_timeout_s:g} s; check that Redis is reachable",
                user_id=user_id,
            )
        return unsubscribe

    def _ensure_listener(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._listen, name=f"{self.client_name}-listener", daemon=True
                )
                self._thread.start()

    # -- the listener thread ----------------------------------------------------------------

    def _listen(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._connect()
                self._run_commands()
                if self._users:
                    message = self._pubsub.get_message(timeout=self.poll_interval_s)
                    if message is not None:
                        self._handle(message)
                else:
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()
                backoff = 0.05
            except self._redis_errors as exc:
                if self._stop.is_set():
                    break
                _log.warning(
                    "event bus lost its Redis subscription; reconnecting",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff,
                )
                self._drop_pubsub()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception as exc:  # keep listening whatever one message does
                _log.error("event bus listener error", error=f"{type(exc).__name__}: {exc}")
        self._drop_pubsub()

    def _connect(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        self._pubsub = pubsub
        self._reconnects += 1 if self._users else 0
        for user_id in sorted(self._users):
            self._users[user_id].live = False
            pubsub.subscribe(self.channel(user_id))

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _run_commands(self) -> None:
        while True:
            try:
                kind, user_id, subscriber, extra = self._commands.get_nowait()
            except queue.Empty:
                return
            state = self._users.get(user_id)
            if kind == "join":
                since, done = extra
                if state is None:
                    state = self._users[user_id] = _RemoteUser()
                    state.waiting.append((subscriber, since, done))
                    self._pubsub.subscribe(self.channel(user_id))
                elif not state.live:
                    state.waiting.append((subscriber, since, done))
                else:
                    self._join(user_id, state, subscriber, since, done)
            elif state is not None:
                state.subscribers = tuple(s for s in state.subscribers if s is not subscriber)
                state.waiting = [w for w in state.waiting if w[0] is not subscriber]
                if not state.subscribers and not state.waiting:
                    del self._users[user_id]
                    self._pubsub.unsubscribe(self.channel(user_id))

    def _join(
        self,
        user_id: str,
        state: _RemoteUser,
        subscriber: _Subscriber,
        since: int | None,
        done: threading.Event,
    ) -> None:
        last = state.last or 0
        if since is not None and subscriber.active and since < last:
            self._deliver(user_id, self._read(user_id, since, last), (subscriber,))
        state.subscribers = (*state.subscribers, subscriber)
        done.set()

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message.get("channel") or ""
        user_id = channel[len(self.prefix) + len(":notify:") :]
        state = self._users.get(user_id)
        if state is None:
            return
        kind = message.get("type")
        if kind == "subscribe":
            if state.last is None:
                state.last = self._top(user_id)  # first join: live from here
            else:
                self._catch_up(user_id, state)  # a resubscription: fetch what we missed
            state.live = True
            while state.waiting:  # one at a time: a Redis error leaves the rest for the retry
                subscriber, since, done = state.waiting[0]
                self._join(user_id, state, subscriber, since, done)
                state.waiting.pop(0)
        elif kind == "message" and state.live:
            head, _, body = str(message.get("data", "")).partition(" ")
            sequence = int(head)
            last = state.last or 0
            if sequence == 1 and last > 1:
                # the stream expired and started again: whatever we knew is gone
                last = state.last = 0
            if sequence <= last:
                return
            if sequence == last + 1:
                event = RuntimeEvent.from_json(body).with_user_sequence(sequence)
                state.last = sequence
                self._deliver(user_id, [event], state.subscribers)
            else:
                self._catch_up(user_id, state)

    def _catch_up(self, user_id: str, state: _RemoteUser) -> None:
        events = self._read(user_id, state.last or 0)
        if events:
            self._gap_fills += 1
            state.last = events[-1].user_sequence
            self._deliver(user_id, events, state.subscribers)

    def _deliver(
        self, user_id: str, events: list[RuntimeEvent], subscribers: tuple[_Subscriber, ...]
    ) -> None:
        for event in events:
            active = [s for s in subscribers if s.active]
            failures = _deliver(user_id, event, active)
            self._delivered += len(active) - failures
            self._failures += failures

    # -- introspection and shutdown ---------------------------------------------------------

    @property
    def published(self) -> int:
        return self._published

    @property
    def delivered(self) -> int:
        return self._delivered

    @property
    def delivery_failures(self) -> int:
        return self._failures

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {
                "published": self._published,
                "publish_errors": self._publish_errors,
                "delivered": self._delivered,
                "delivery_failures": self._failures,
                "users": len(self._users),
                "reconnects": self._reconnects,
                "gap_fills": self._gap_fills,
            }

    def close(self) -> None:
        """Stop the listener and close the connections; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with contextlib.suppress(Exception):
            self._client.close()


def event_bus_from_settings(settings: RuntimeSettings) -> InProcessEventBus | RedisEventBus:
    """Redis when PLANFORGE_REDIS_URL is set, else in-process; sized by the settings."""
    if settings.redis_url:
        return RedisEventBus(settings.redis_url, buffer_size=settings.event_buffer)
    return InProcessEventBus(buffer_size=settings.event_buffer, max_users=settings.max_users)
