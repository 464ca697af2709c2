"""The Redis event bus: several processes serving the same users share one Redis."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

from planforge.logs import get_logger
from planforge.runtime._context import check_id, new_run_id
from planforge.runtime._delivery import (
    EventCallback,
    Subscriber,
    Unsubscribe,
    check_since,
    deliver,
)
from planforge.runtime._events import RuntimeEvent
from planforge.runtime.errors import EventBusError, InvalidEventError

__all__ = ["RedisEventBus"]

_log = get_logger("runtime.bus")


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
        self.subscribers: tuple[Subscriber, ...] = ()
        self.waiting: list[tuple[Subscriber, int | None, threading.Event]] = []
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
        self._commands: queue.SimpleQueue[tuple[str, str, Subscriber, Any]] = queue.SimpleQueue()
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
        check_since(since)
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
        check_since(since)
        if self._closed:
            raise EventBusError("the event bus is closed; create a new one", user_id=user_id)
        subscriber = Subscriber(callback)
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
        subscriber: Subscriber,
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
        self, user_id: str, events: list[RuntimeEvent], subscribers: tuple[Subscriber, ...]
    ) -> None:
        for event in events:
            active = [s for s in subscribers if s.active]
            failures = deliver(user_id, event, active)
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
