"""The event streams open in this process, by token, and the one watcher that closes those
whose token was revoked or rotated away.

A stream authenticates once, at its handshake; a revocation must still end it within a
second. One timer per stream would wake every stream twice a second (2,000 wake-ups and
thread hops a second for 1,000 streams); instead one watcher per process refreshes the token
cache's view of the auth epoch every `CHECK_S` while any stream is open, and only when the
cache was dropped (something was revoked or rotated somewhere) re-checks each distinct
token of the open streams, in one trip off the event loop, and signals the streams whose
token no longer works. If the database cannot be read, open streams go on (new connections
are refused) and the watcher says so once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Final

from planforge.errors import PlannerError
from planforge.logs import get_logger
from planforge.server._tokens import TokenCache

__all__ = ["CHECK_S", "OpenStreams"]

#: How often the watcher looks whether anything was revoked (one epoch read at most).
CHECK_S: Final = 0.5

_log = get_logger("server.streams")


class OpenStreams:
    """Open streams by token; used from the event loop only (its checks run off it)."""

    def __init__(self, tokens: TokenCache, *, check_s: float = CHECK_S) -> None:
        self._tokens = tokens
        self._check_s = check_s
        self._streams: dict[str, dict[int, asyncio.Event]] = {}
        # per token, the cache generation in which it was last known to work: a drop since
        # then (a revocation or rotation somewhere) means it must be checked again
        self._validated: dict[str, int] = {}
        self._ids = itertools.count()

    def __len__(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    def add(self, token: str, generation: int) -> tuple[asyncio.Event, Callable[[], None]]:
        """Register a stream whose token worked in cache `generation` (read before its
        lookup): an event set once the token stops working, and `remove()`."""
        revoked = asyncio.Event()
        key = next(self._ids)
        self._streams.setdefault(token, {})[key] = revoked
        self._validated[token] = min(self._validated.get(token, generation), generation)

        def remove() -> None:
            streams = self._streams.get(token)
            if streams is not None:
                streams.pop(key, None)
                if not streams:
                    del self._streams[token]
                    self._validated.pop(token, None)

        return revoked, remove

    async def watch(self) -> None:
        """Run until cancelled (the app's lifespan starts and stops it)."""
        failing = False
        while True:
            await asyncio.sleep(self._check_s)
            if not self._validated:
                continue
            snapshot = dict(self._validated)
            try:
                generation, revoked, working = await asyncio.to_thread(self._recheck, snapshot)
            except PlannerError as exc:
                if not failing:
                    _log.warning("cannot re-check open streams' tokens", error=type(exc).__name__)
                failing = True
                continue
            failing = False
            for token in working:
                if self._validated.get(token) == snapshot[token]:
                    self._validated[token] = generation
            for token in revoked:
                for event in self._streams.get(token, {}).values():
                    event.set()

    def _recheck(self, snapshot: dict[str, int]) -> tuple[int, list[str], list[str]]:
        """(generation, revoked, working) for the tokens not checked since the last drop;
        blocking: may read the database."""
        self._tokens.refresh_epoch()
        generation = self._tokens.generation  # read first: a drop during the checks shows
        revoked: list[str] = []
        working: list[str] = []
        for token, checked_in in snapshot.items():
            if checked_in != generation:
                found = self._tokens.user_for(token) is not None
                (working if found else revoked).append(token)
        return generation, revoked, working
