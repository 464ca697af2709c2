"""The quarantine store: persistence, cross-process release, corrupt files, bounds, fingerprints."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from planforge.factory._quarantine import QuarantineEntry, QuarantineStore, file_fingerprint


def entry(name: str, since: float = 1000.0, fingerprint: str = "10:1") -> QuarantineEntry:
    return QuarantineEntry(
        planner_name=name,
        module=f"plugins.{name}",
        reason="raised ValueError: boom at import",
        error_type="ValueError",
        since=since,
        fingerprint=fingerprint,
        path=f"/plugins/{name}.py",
    )


def test_entries_survive_a_new_store_instance(tmp_path: Path) -> None:
    path = tmp_path / "state" / "quarantine.json"
    first = QuarantineStore(path)
    first.add(entry("beta"))
    first.add(entry("alpha", fingerprint=""))

    second = QuarantineStore(path)

    assert second.get("beta") == entry("beta")
    assert [e.planner_name for e in second.entries()] == ["alpha", "beta"]
    assert second.get("alpha") == entry("alpha", fingerprint="")


def test_add_replaces_the_entry_for_the_same_planner(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q.json")
    store.add(entry("alpha", since=1.0))
    store.add(entry("alpha", since=2.0))
    assert len(store) == 1
    found = store.get("alpha")
    assert found is not None
    assert found.since == 2.0


def test_release_from_a_second_instance_is_seen_by_the_first(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    server = QuarantineStore(path)
    server.add(entry("alpha"))
    server.add(entry("beta"))
    assert server.get("alpha") is not None

    operator = QuarantineStore(path)
    assert operator.release("alpha") is True

    assert server.get("alpha") is None
    assert [e.planner_name for e in server.entries()] == ["beta"]


def test_an_add_from_a_second_instance_is_seen_by_the_first(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    first = QuarantineStore(path)
    assert first.entries() == []
    QuarantineStore(path).add(entry("gamma"))
    assert "gamma" in first


def test_release_of_an_unknown_name_reports_false_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    store = QuarantineStore(path)
    store.add(entry("alpha"))
    before = path.read_bytes()
    assert store.release("nobody") is False
    assert path.read_bytes() == before


def test_a_corrupt_file_starts_empty_with_a_warning_and_is_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "q.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="planforge.quarantine"):
        store = QuarantineStore(path)
    assert store.entries() == []
    assert any("unreadable" in record.getMessage() for record in caplog.records)

    store.add(entry("alpha"))
    assert json.loads(path.read_text())["entries"][0]["planner_name"] == "alpha"
    assert QuarantineStore(path).get("alpha") == entry("alpha")


def test_malformed_entries_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    good = entry("alpha").to_dict()
    bad = {**entry("beta").to_dict(), "since": "yesterday"}
    path.write_text(json.dumps({"version": 1, "entries": [bad, good, 42]}))
    assert [e.planner_name for e in QuarantineStore(path).entries()] == ["alpha"]


def test_the_store_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    store = QuarantineStore(path, max_entries=3)
    for index, name in enumerate(["d", "a", "c", "b", "e"]):
        store.add(entry(name, since=float(index)))
    assert [e.planner_name for e in store.entries()] == ["b", "c", "e"]
    assert len(json.loads(path.read_text())["entries"]) == 3


def test_a_file_larger_than_the_bound_is_trimmed_on_load(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    QuarantineStore(path).add(entry("old", since=1.0))
    QuarantineStore(path).add(entry("new", since=2.0))
    assert [e.planner_name for e in QuarantineStore(path, max_entries=1).entries()] == ["new"]


def test_an_entry_is_current_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text("x = 1\n")
    before = file_fingerprint(source)
    quarantined = entry("alpha", fingerprint=before)
    assert QuarantineStore.is_current(quarantined, file_fingerprint(source))

    source.write_text("x = 22\n")
    os.utime(source, ns=(1, 1))
    assert file_fingerprint(source) != before
    assert not QuarantineStore.is_current(quarantined, file_fingerprint(source))


def test_file_fingerprint_is_size_and_mtime_or_empty(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text("abc")
    os.utime(source, ns=(5, 123456789))
    assert file_fingerprint(source) == "3:123456789"
    assert file_fingerprint(tmp_path / "missing.py") == ""
    assert file_fingerprint(None) == ""


def test_memory_only_store_writes_nothing(tmp_path: Path) -> None:
    store = QuarantineStore(None, max_entries=2)
    store.add(entry("a", since=1.0))
    store.add(entry("b", since=2.0))
    store.add(entry("c", since=3.0))
    assert [e.planner_name for e in store.entries()] == ["b", "c"]
    assert store.release("b") is True
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_rejected_and_changes_nothing(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q.json")
    with pytest.raises(ValueError, match="planner name"):
        store.add(entry(""))
    with pytest.raises(TypeError):
        store.add({"planner_name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        QuarantineStore(None, max_entries=0)
    assert store.entries() == []
    assert not (tmp_path / "q.json").exists()


def test_concurrent_adds_from_threads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    stores = [QuarantineStore(path) for _ in range(2)]

    def add_many(worker: int) -> None:
        for index in range(10):
            stores[worker % 2].add(entry(f"p{worker}_{index}", since=float(index)))

    threads = [threading.Thread(target=add_many, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(QuarantineStore(path).entries()) == 40
