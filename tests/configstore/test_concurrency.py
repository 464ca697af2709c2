"""Concurrent writers never get the same or a skipped version number (threads and processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from planforge.configstore import ConfigStore, CreateResult, VersionConflict
from tests.configstore.conftest import variant

THREADS = 32
PROCESSES = 4
WRITES_PER_PROCESS = 8

# A writer process: imports everything, says "ready", waits for the go file, then writes.
WRITER = """
import sys, time
from pathlib import Path
from planforge.configstore import ConfigStore
from planforge.portfolio.planner import preset_text

url, worker, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
base = preset_text("default")
store = ConfigStore(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
for i in range(count):
    text = base + f"\\n# worker {worker} write {i}\\n"
    result = store.create_new_version("shared", "Shared", text, created_by=f"p{worker}")
    print(result.config.version, flush=True)
store.close()
"""


def _assert_versions_are_a_chain(store: ConfigStore, count: int) -> None:
    history = store.get_version_history("shared")
    assert [c.version for c in history] == list(range(1, count + 1))
    assert [c.active for c in history] == [False] * (count - 1) + [True]
    assert history[0].parent_id is None
    assert [c.parent_id for c in history[1:]] == [c.id for c in history[:-1]]


def test_threads_creating_versions_of_one_name_get_1_to_n(
    store: ConfigStore, base_toml: str
) -> None:
    store.migrate()
    barrier = threading.Barrier(THREADS)

    def write(number: int) -> CreateResult:
        barrier.wait()
        return store.create_new_version(
            "shared", "Shared", variant(base_toml, number), created_by=f"t{number}"
        )

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(write, range(THREADS)))

    assert all(result.created for result in results)
    assert sorted(r.config.version for r in results) == list(range(1, THREADS + 1))
    assert len({r.config.id for r in results}) == THREADS
    _assert_versions_are_a_chain(store, THREADS)
    assert len([e for e in store.audit_log(limit=200) if e.action == "config.create"]) == THREADS


def test_racing_compare_and_swap_writers_let_exactly_one_win(
    store: ConfigStore, base_toml: str
) -> None:
    store.create_new_version("shared", "Shared", base_toml)
    racers = 8
    barrier = threading.Barrier(racers)

    def write(number: int) -> CreateResult | VersionConflict:
        barrier.wait()
        try:
            return store.create_new_version(
                "shared", "Shared", variant(base_toml, number), expected_version=1
            )
        except VersionConflict as conflict:
            return conflict

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = list(pool.map(write, range(racers)))

    winners = [o for o in outcomes if isinstance(o, CreateResult)]
    losers = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(winners) == 1
    assert winners[0].config.version == 2
    assert len(losers) == racers - 1
    assert {(c.expected, c.current) for c in losers} == {(1, 2)}
    _assert_versions_are_a_chain(store, 2)


@pytest.mark.timeout(60)
def test_processes_creating_versions_of_one_name_get_1_to_n(store_url: str, tmp_path: Path) -> None:
    """Four processes start on an empty database at once: they race the migration too."""
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(n), str(WRITES_PER_PROCESS), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready", writer.stderr
        go.touch()
        outputs = [writer.communicate(timeout=50) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    for writer, (_, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
    acknowledged = sorted(int(line) for out, _ in outputs for line in out.split())
    total = PROCESSES * WRITES_PER_PROCESS
    assert acknowledged == list(range(1, total + 1))
    with ConfigStore(store_url) as store:
        _assert_versions_are_a_chain(store, total)
        assert len(store.list_presets()) == 3  # seeded once, not once per process
        creators = {c.created_by for c in store.get_version_history("shared")}
        assert creators == {f"p{n}" for n in range(PROCESSES)}


def test_readers_are_not_blocked_by_a_stream_of_writes(store: ConfigStore, base_toml: str) -> None:
    """Bucket reads keep answering while writers run (WAL on SQLite, MVCC on PostgreSQL)."""
    config = store.create_new_version("shared", "Shared", base_toml).config
    store.assign_config_to_bucket("core", config.id)
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while True:  # at least one read, however the threads are scheduled
            seen.append(store.get_bucket_config("core").id)
            if done.is_set():
                return
            time.sleep(0.001)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for number in range(1, 11):
            created = store.create_new_version("shared", "Shared", variant(base_toml, number))
            store.assign_config_to_bucket("core", created.config.id)
    finally:
        done.set()
        reader.join()
    history_ids = [a.config_id for a in store.bucket_history("core")]
    assert seen
    assert set(seen) <= set(history_ids)
    assert store.get_bucket_config("core").id == history_ids[-1]
