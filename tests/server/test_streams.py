"""One watcher per process ends the open event streams whose token was revoked: on a real
SQLite store, with the token cache's real epoch checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.configstore import ConfigStore, StoreError
from planforge.server._streams import OpenStreams
from planforge.server._tokens import TokenCache

CHECK_S = 0.01
WAIT_S = 10.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    with ConfigStore(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


async def until(condition: asyncio.Event | None = None, *, rounds: int = 0) -> None:
    """Wait for `condition` (bounded), or let the watcher run `rounds` checks."""
    if condition is not None:
        await asyncio.wait_for(condition.wait(), WAIT_S)
    else:
        await asyncio.sleep(CHECK_S * rounds)


def test_a_revoked_tokens_streams_are_signalled_and_no_other(store: ConfigStore) -> None:
    tokens = TokenCache(store, epoch_check_s=0.0)
    _, ann = store.create_user("ann", "operator")
    _, bob = store.create_user("bob", "operator")

    async def scenario() -> tuple[bool, bool, bool]:
        streams = OpenStreams(tokens, check_s=CHECK_S)
        generation = tokens.generation
        assert tokens.user_for(ann) is not None
        assert tokens.user_for(bob) is not None
        first, _ = streams.add(ann, generation)
        second, _ = streams.add(ann, generation)
        other, _ = streams.add(bob, generation)
        watcher = asyncio.create_task(streams.watch())
        try:
            await until(rounds=5)
            assert not first.is_set()
            await asyncio.to_thread(store.revoke_user, "ann", "ops")
            await until(first)
            await until(rounds=5)
        finally:
            watcher.cancel()
        return first.is_set(), second.is_set(), other.is_set()

    assert asyncio.run(scenario()) == (True, True, False)


def test_a_stream_registered_just_before_a_drop_is_checked_again(store: ConfigStore) -> None:
    """Its handshake looked the token up in an older generation: any drop since means its
    token is checked, even if the watcher already looked at the others."""
    tokens = TokenCache(store, epoch_check_s=0.0)
    _, ann = store.create_user("ann", "operator")
    store.create_user("bob", "operator")

    async def scenario() -> bool:
        streams = OpenStreams(tokens, check_s=CHECK_S)
        old = tokens.generation
        assert tokens.user_for(ann) is not None
        await asyncio.to_thread(store.revoke_user, "ann", "ops")  # the handshake was earlier
        revoked, _ = streams.add(ann, old)
        watcher = asyncio.create_task(streams.watch())
        try:
            await until(revoked)
        finally:
            watcher.cancel()
        return revoked.is_set()

    assert asyncio.run(scenario())


def test_removed_streams_are_forgotten(store: ConfigStore) -> None:
    tokens = TokenCache(store)
    streams = OpenStreams(tokens)

    async def scenario() -> int:
        _, remove_one = streams.add("pf_a", 0)
        _, remove_two = streams.add("pf_a", 0)
        assert len(streams) == 2
        remove_one()
        remove_two()
        remove_two()  # twice is harmless
        return len(streams)

    assert asyncio.run(scenario()) == 0


def test_an_unreadable_database_leaves_open_streams_and_warns_once(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = TokenCache(store, epoch_check_s=0.0)
    _, ann = store.create_user("ann", "operator")

    def outage() -> int:
        raise StoreError("The database failed to read the auth epoch: connection refused")

    async def scenario() -> bool:
        streams = OpenStreams(tokens, check_s=CHECK_S)
        revoked, _ = streams.add(ann, tokens.generation - 1)  # due for a check
        monkeypatch.setattr(store, "auth_epoch", outage)
        watcher = asyncio.create_task(streams.watch())
        try:
            await until(rounds=20)
        finally:
            watcher.cancel()
        return revoked.is_set()

    with caplog.at_level(logging.WARNING, logger="planforge.server._streams"):
        assert asyncio.run(scenario()) is False
    assert caplog.text.count("cannot re-check open streams' tokens") == 1
