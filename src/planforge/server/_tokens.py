"""This process's cache of token lookups, which a revocation anywhere empties within a second.

Looking every token up in the database made each request a query. The cache keeps recent
lookups by token hash (bounded, least recently used out first) and watches the store's auth
epoch, a counter that every revocation and rotation moves on in its own transaction: when a
request needs a token checked and the epoch was last read more than `EPOCH_CHECK_S` ago, it
is read again (one primary-key query), and if it moved the whole cache is dropped. A revoked
or rotated-away token is therefore refused by every process within `EPOCH_CHECK_S` plus one
query, at a cost of at most one small read per process per interval instead of one per request.

A lookup that raced a revocation cannot slip back in: every drop moves a generation counter,
and a lookup is cached only if no drop happened while it ran. If the epoch cannot be read,
the request fails (the database is down for lookups too) rather than trusting the cache.

The same object records each user's last use, at most once per `TOUCH_INTERVAL_S` per user
and process, best effort: uses are gathered in memory and written in one statement at most
every `FLUSH_S` (by the request that finds a batch due, and by `flush()` at shutdown), so a
burst of a thousand users signing in is one write, not a thousand; a failed write is logged
and the request goes on.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from planforge.configstore import TOUCH_INTERVAL_S, ConfigStore, User, token_digest
from planforge.errors import PlannerError
from planforge.logs import get_logger

__all__ = ["EPOCH_CHECK_S", "FLUSH_S", "MAX_CACHED_TOKENS", "MAX_ENTRY_AGE_S", "TokenCache"]

#: How stale this process's view of revocations may be, at most (plus one query).
EPOCH_CHECK_S: Final = 0.25
#: Token lookups kept; also the bound on the users whose last use this process remembers.
MAX_CACHED_TOKENS: Final = 4096
#: A cached lookup is redone after this long even when nothing was revoked.
MAX_ENTRY_AGE_S: Final = 60.0
#: Uses gathered in memory are written at most this often, in one statement.
FLUSH_S: Final = 5.0

_log = get_logger("server.tokens")


class TokenCache:
    """Thread-safe; one per server process (on the service state)."""

    def __init__(
        self,
        store: ConfigStore,
        *,
        max_entries: int = MAX_CACHED_TOKENS,
        epoch_check_s: float = EPOCH_CHECK_S,
        max_age_s: float = MAX_ENTRY_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._store = store
        self._max_entries = max_entries
        self._epoch_check_s = epoch_check_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the dictionaries and the generation
        self._refresh_lock = threading.Lock()  # one epoch read at a time
        self._entries: OrderedDict[str, tuple[User, float]] = OrderedDict()
        self._touched: OrderedDict[int, float] = OrderedDict()
        self._pending: dict[int, str] = {}  # user id -> name, uses not yet written
        self._flushed_at = -math.inf
        self._epoch: int | None = None
        self._checked_at = -math.inf
        self._generation = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def generation(self) -> int:
        """Moves on each time the cache is dropped: what a long-lived connection watches to
        know when to check its token again."""
        return self._generation

    def epoch_is_stale(self) -> bool:
        """Whether `refresh_epoch` would read the database (cheap; no I/O)."""
        return self._clock() - self._checked_at >= self._epoch_check_s

    def user_for(self, token: str) -> User | None:
        """The active user holding `token`, or None. Blocking: may query the database."""
        self.refresh_epoch()
        key = token_digest(token)
        now = self._clock()
        with self._lock:
            generation = self._generation
            user = self._cached(key, now)
        if user is None:
            user = self._store.user_for_token(token)
            if user is None:
                return None  # unknown tokens are not cached: a new user works at once
            self._remember(key, user, now, generation)
        self._touch(user, now)
        return user

    def _cached(self, key: str, now: float) -> User | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        user, stored_at = entry
        if now - stored_at >= self._max_age_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return user

    def _remember(self, key: str, user: User, now: float, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # the cache was dropped while we looked: the answer may be stale
            self._entries[key] = (user, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def refresh_epoch(self) -> None:
        """Re-read the auth epoch if it is older than the interval; drop the cache if it moved.

        Blocking when it reads; raises `StoreError` when the database cannot be read.
        """
        if not self.epoch_is_stale():
            return
        with self._refresh_lock:
            started = self._clock()
            if started - self._checked_at < self._epoch_check_s:
                return  # another thread read it while we waited
            epoch = self._store.auth_epoch()  # a StoreError fails the request: fail closed
            with self._lock:
                if epoch != self._epoch:
                    self._entries.clear()
                    self._generation += 1
                    self._epoch = epoch
            self._checked_at = started

    def _touch(self, user: User, now: float) -> None:
        """Note the user's use, at most once per interval per user; write the batch if due."""
        with self._lock:
            last = self._touched.get(user.id)
            if last is None or now - last >= TOUCH_INTERVAL_S:
                self._touched[user.id] = now
                self._touched.move_to_end(user.id)
                while len(self._touched) > self._max_entries:
                    self._touched.popitem(last=False)
                if len(self._pending) < self._max_entries:
                    self._pending[user.id] = user.name
            due = bool(self._pending) and now - self._flushed_at >= FLUSH_S
            if due:
                self._flushed_at = now
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the gathered uses now, in one statement; never raises."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self._store.touch_users(sorted(pending))
        except PlannerError as exc:
            # the error's message names the database; the log line keeps to the facts
            _log.warning(
                "could not record API users' last use",
                users=len(pending),
                first=pending[min(pending)],
                error=type(exc).__name__,
            )
