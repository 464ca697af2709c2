"""The context a batch plans each bucket with, on a real SQLite file and the real PostgreSQL
server: replaced with an audit row, bounded like a run's context."""

from __future__ import annotations

import pytest

from planforge.configstore import ConfigStore, InvalidInput, RunContextTooLarge
from planforge.configstore._run_records import encode_context


def test_a_context_is_stored_replaced_and_audited(store: ConfigStore) -> None:
    assert store.get_bucket_context("core") is None
    first = store.set_bucket_context("core", {"cash": 1, "positions": []}, "ann")
    assert store.get_bucket_context("core") == {"cash": 1, "positions": []}
    second = store.set_bucket_context("core", {"cash": 2}, "bob")
    assert store.get_bucket_context("core") == {"cash": 2}
    assert second == encode_context({"cash": 2})[1] != first
    entries = [e for e in store.audit_log() if e.action == "bucket.context"]
    assert [(e.actor, e.detail["context_digest"]) for e in entries[:2]] == [
        ("bob", second),
        ("ann", first),
    ]
    assert store.get_bucket_context("satellite") is None
    assert store.get_bucket_context("bad\x00name") is None


def test_a_context_too_large_or_not_an_object_changes_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANFORGE_RUNS_MAX_CONTEXT_BYTES", "1024")
    noisy = {"blob": "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))}
    with ConfigStore(store_url) as store:
        store.set_bucket_context("core", {"cash": 1}, "ann")
        with pytest.raises(RunContextTooLarge, match="PLANFORGE_RUNS_MAX_CONTEXT_BYTES"):
            store.set_bucket_context("core", noisy, "ann")
        with pytest.raises(InvalidInput):
            store.set_bucket_context("core", [1, 2], "ann")  # type: ignore[arg-type]
        assert store.get_bucket_context("core") == {"cash": 1}
