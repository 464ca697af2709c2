"""The server's token cache on a real SQLite store: lookups are cached, a revocation empties
the cache at the next epoch check, last use is written at most once a minute, and an outage
of the database fails closed for lookups but never fails a request over last use."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from planforge.configstore import TOUCH_INTERVAL_S, ConfigStore, StoreError
from planforge.server._tokens import EPOCH_CHECK_S, FLUSH_S, TokenCache


class Clock:
    """Monotonic time that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    with ConfigStore(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def forget_every_token(store: ConfigStore) -> None:
    """Change the stored hashes behind the cache's back (no epoch move): only a cache still
    answers for the old tokens."""
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE api_users SET token_hash = 'x' || id"))


def last_used(store: ConfigStore, name: str) -> datetime | None:
    return {user.name: user.last_used_at for user in store.list_users()}[name]


def test_a_lookup_is_cached_until_a_revocation_moves_the_epoch(store: ConfigStore) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    ann, token = store.create_user("ann", "operator")
    store.create_user("bob", "viewer")
    assert cache.user_for(token) == ann
    forget_every_token(store)
    clock.advance(EPOCH_CHECK_S * 4)  # the epoch is re-read, and has not moved
    cached = cache.user_for(token)
    assert cached is not None
    assert cached.name == "ann"
    store.revoke_user("bob")  # any revocation moves the epoch: every process drops its cache
    assert cache.user_for(token) is not None  # read within the interval: still the old view
    clock.advance(EPOCH_CHECK_S)
    assert cache.user_for(token) is None
    assert len(cache) == 0


def test_a_rotated_token_is_refused_after_the_next_epoch_check(store: ConfigStore) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    _, old = store.create_user("ann", "operator")
    assert cache.user_for(old) is not None
    _, new = store.rotate_user("ann")
    clock.advance(EPOCH_CHECK_S)
    assert cache.user_for(old) is None
    renewed = cache.user_for(new)
    assert renewed is not None
    assert renewed.name == "ann"


def test_unknown_tokens_are_not_cached_so_a_new_user_works_at_once(store: ConfigStore) -> None:
    cache = TokenCache(store, clock=Clock())
    assert cache.user_for("pf_not-yet") is None
    _, token = store.create_user("ann", "viewer")
    assert cache.user_for(token) is not None


def test_the_cache_is_bounded_and_old_entries_are_looked_up_again(store: ConfigStore) -> None:
    clock = Clock()
    cache = TokenCache(store, max_entries=2, max_age_s=60.0, clock=clock)
    tokens = [store.create_user(f"user{index}", "viewer")[1] for index in range(5)]
    for token in tokens:
        assert cache.user_for(token) is not None
    assert len(cache) == 2
    forget_every_token(store)
    assert cache.user_for(tokens[-1]) is not None  # among the two newest: cached
    assert cache.user_for(tokens[0]) is None  # pushed out: looked up, and now unknown
    clock.advance(60.0)
    assert cache.user_for(tokens[-1]) is None  # too old: looked up again


def test_last_use_is_written_at_most_once_an_interval(store: ConfigStore) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    _, token = store.create_user("ann", "viewer")
    assert last_used(store, "ann") is None
    cache.user_for(token)
    first = last_used(store, "ann")
    assert first is not None
    with store.engine.begin() as connection:  # forget it, to see whether it is written again
        connection.execute(text("UPDATE api_users SET last_used_at = NULL"))
    for _ in range(20):
        clock.advance(1.0)
        cache.user_for(token)
    assert last_used(store, "ann") is None
    clock.advance(TOUCH_INTERVAL_S)
    cache.user_for(token)
    later = last_used(store, "ann")
    assert later is not None
    assert later >= first


def test_a_failed_last_use_write_never_fails_the_request(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TokenCache(store, clock=Clock())
    _, token = store.create_user("ann", "viewer")

    def outage(user_ids: list[int]) -> int:
        raise StoreError("The database failed to record API users' last use: disk I/O error")

    monkeypatch.setattr(store, "touch_users", outage)
    with caplog.at_level(logging.WARNING, logger="planforge.server._tokens"):
        user = cache.user_for(token)
    assert user is not None
    assert user.name == "ann"
    assert "could not record API users' last use" in caplog.text
    assert '"first":"ann"' in caplog.text
    assert token not in caplog.text


def test_an_unreadable_epoch_fails_closed(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    _, token = store.create_user("ann", "viewer")
    assert cache.user_for(token) is not None

    def outage() -> int:
        raise StoreError("The database failed to read the auth epoch: connection refused")

    monkeypatch.setattr(store, "auth_epoch", outage)
    clock.advance(EPOCH_CHECK_S)
    with pytest.raises(StoreError):
        cache.user_for(token)  # a revocation may be unseen: the cached answer is not trusted


def test_uses_are_gathered_and_written_in_one_batch(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    tokens = {name: store.create_user(name, "viewer")[1] for name in ("ann", "bob", "cy")}
    batches: list[list[int]] = []
    write = store.touch_users

    def recorded(user_ids: list[int]) -> int:
        batches.append(list(user_ids))
        return write(user_ids)

    monkeypatch.setattr(store, "touch_users", recorded)
    cache.user_for(tokens["ann"])  # the first use is written at once
    for name in ("bob", "cy"):
        clock.advance(0.1)
        cache.user_for(tokens[name])  # gathered: the last write was under FLUSH_S ago
    assert len(batches) == 1
    assert last_used(store, "bob") is None
    clock.advance(FLUSH_S)
    cache.user_for(tokens["ann"])  # ann's own use is not due again, but the batch is
    assert len(batches) == 2
    assert len(batches[1]) == 2
    assert last_used(store, "bob") is not None
    assert last_used(store, "cy") is not None


def test_flush_writes_what_is_gathered(store: ConfigStore) -> None:
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    tokens = [store.create_user(name, "viewer")[1] for name in ("ann", "bob")]
    cache.user_for(tokens[0])
    cache.user_for(tokens[1])
    assert last_used(store, "bob") is None
    cache.flush()
    assert last_used(store, "bob") is not None
