"""The runs table under concurrency and over time: one winner per claim (threads and
processes), lease expiry recovery, pruning, its settings, and the schema upgrade that adds it
to an existing database."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from planforge.configstore import (
    CANCELLED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    ConfigStore,
    RunStore,
    StoredRun,
    load_run_settings,
)
from planforge.configstore._db import create_store_engine
from planforge.configstore._store import SCRIPT_LOCATION
from planforge.errors import SettingsError
from tests.configstore.runs_helpers import Clock, finished_run, run_store

THREADS = 8
PROCESSES = 4

# A claimer process: opens the store, says "ready", waits for the go file, claims the run.
CLAIMER = """
import sys, time
from pathlib import Path
from planforge.configstore import ConfigStore

url, owner, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = ConfigStore(url)
store.migrate()
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
claimed = store.runs.claim("shared", owner, 60)
print("won" if claimed is not None else "lost", flush=True)
store.close()
"""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs(store: ConfigStore, clock: Clock) -> RunStore:
    return run_store(store, clock)


def _queue(runs: RunStore, run_id: str, user: str = "ann") -> None:
    runs.create(run_id=run_id, user=user, objective="o", context={"id": run_id})


# -- one winner ---------------------------------------------------------------------------


def test_threads_claiming_one_run_have_one_winner(runs: RunStore) -> None:
    _queue(runs, "shared")
    barrier = threading.Barrier(THREADS)

    def claim(number: int) -> StoredRun | None:
        barrier.wait()
        return runs.claim("shared", f"replica-{number}", 60)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        outcomes = list(pool.map(claim, range(THREADS)))
    winners = [outcome for outcome in outcomes if outcome is not None]
    assert len(winners) == 1
    run = runs.get("shared")
    assert run is not None
    assert (run.attempts, run.lease_owner) == (1, winners[0].lease_owner)


@pytest.mark.timeout(60)
def test_processes_claiming_one_run_have_one_winner(store_url: str, tmp_path: Path) -> None:
    with ConfigStore(store_url) as store:
        _queue(store.runs, "shared")
    go = tmp_path / "go"
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, store_url, f"process-{n}", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for claimer in claimers:
            assert claimer.stdout is not None
            assert claimer.stdout.readline().strip() == "ready", claimer.stderr
        go.touch()
        outputs = [claimer.communicate(timeout=50) for claimer in claimers]
    finally:
        for claimer in claimers:
            claimer.kill()
    assert all(claimer.returncode == 0 for claimer in claimers), [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["lost"] * (PROCESSES - 1) + ["won"]
    with ConfigStore(store_url) as store:
        run = store.runs.get("shared")
    assert run is not None
    assert run.status == RUNNING
    assert run.attempts == 1


def test_replicas_claiming_queued_runs_never_share_one(runs: RunStore) -> None:
    for number in range(20):
        _queue(runs, f"r{number:02}")
    barrier = threading.Barrier(4)

    def claim(number: int) -> list[str]:
        barrier.wait()
        return [run.run_id for run in runs.claim_queued(f"replica-{number}", 60, limit=5)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        taken = [run_id for batch in pool.map(claim, range(4)) for run_id in batch]
    assert sorted(taken) == [f"r{number:02}" for number in range(20)]


# -- lease expiry -------------------------------------------------------------------------


def test_an_expired_run_is_queued_again_then_interrupted(runs: RunStore, clock: Clock) -> None:
    _queue(runs, "r1")
    assert runs.claim("r1", "replica-a", 10) is not None
    clock.advance(9)
    assert runs.recover_expired("replica-b") == []  # the lease still holds
    clock.advance(2)
    (requeued,) = runs.recover_expired("replica-b")
    assert (requeued.run_id, requeued.status, requeued.attempts) == ("r1", QUEUED, 1)
    assert requeued.lease_owner is None
    assert requeued.started_at is None
    assert not runs.complete("r1", "replica-a", {"steps": []})  # the old owner lost it
    retried = runs.claim("r1", "replica-b", 10)
    assert retried is not None
    assert retried.attempts == 2
    clock.advance(11)
    (interrupted,) = runs.recover_expired("replica-c")
    assert (interrupted.status, interrupted.attempts) == (INTERRUPTED, 2)
    assert interrupted.error is not None
    assert interrupted.error["error"] == "RunInterrupted"
    assert "stopped while it ran; it was tried 2 time(s)" in interrupted.error["message"]
    assert interrupted.finished_at == clock.now
    assert runs.recover_expired("replica-c") == []
    assert runs.claim("r1", "replica-c", 10) is None


def test_an_expired_run_with_a_cancel_request_ends_cancelled(runs: RunStore, clock: Clock) -> None:
    _queue(runs, "r1")
    assert runs.claim("r1", "replica-a", 10) is not None
    runs.request_cancel("r1", user="ann")
    clock.advance(11)
    (recovered,) = runs.recover_expired("replica-b", max_attempts=5)
    assert recovered.status == CANCELLED
    assert runs.claim_queued("replica-b", 10, limit=5) == []


def test_replicas_recovering_at_once_take_each_run_once(runs: RunStore, clock: Clock) -> None:
    for number in range(12):
        _queue(runs, f"r{number:02}")
    assert len(runs.claim_queued("replica-a", 10, limit=12)) == 12
    clock.advance(11)
    barrier = threading.Barrier(4)

    def recover(number: int) -> list[str]:
        barrier.wait()
        return [run.run_id for run in runs.recover_expired(f"replica-{number}")]

    with ThreadPoolExecutor(max_workers=4) as pool:
        taken = [run_id for batch in pool.map(recover, range(4)) for run_id in batch]
    assert sorted(taken) == [f"r{number:02}" for number in range(12)]
    assert {run.status for run in runs.list()} == {QUEUED}


# -- pruning ------------------------------------------------------------------------------


def test_prune_deletes_finished_runs_past_the_age(store: ConfigStore, clock: Clock) -> None:
    runs = run_store(store, clock, max_age_days=1)
    finished_run(runs, "old")
    _queue(runs, "old-queued")
    _queue(runs, "old-running")
    assert runs.claim("old-running", "replica-a", 7 * 24 * 3600) is not None
    clock.advance(23 * 3600)
    finished_run(runs, "recent")
    clock.advance(2 * 3600)
    assert runs.prune() == 1
    assert sorted(run.run_id for run in runs.list()) == ["old-queued", "old-running", "recent"]
    assert runs.prune() == 0


def test_prune_keeps_each_users_newest_finished_runs(store: ConfigStore, clock: Clock) -> None:
    runs = run_store(store, clock, max_per_user=2)
    for number in range(4):
        finished_run(runs, f"ann-{number}", user="ann")
        clock.advance(1)
    _queue(runs, "ann-queued", user="ann")
    finished_run(runs, "bob-0", user="bob")
    assert runs.prune() == 2
    assert [run.run_id for run in runs.list(user="ann")] == ["ann-queued", "ann-3", "ann-2"]
    assert [run.run_id for run in runs.list(user="bob")] == ["bob-0"]


def test_prune_keeps_the_newest_finished_runs_in_all(store: ConfigStore, clock: Clock) -> None:
    runs = run_store(store, clock, max_total=3)
    for number in range(5):
        finished_run(runs, f"r{number}", user=f"user-{number % 2}")
        clock.advance(1)
    _queue(runs, "queued")
    assert runs.prune() == 2
    assert [run.run_id for run in runs.list()] == ["queued", "r4", "r3", "r2"]


# -- settings and schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLANFORGE_RUNS_MAX_TOTAL", "lots"),
        ("PLANFORGE_RUNS_MAX_PER_USER", "0"),
        ("PLANFORGE_RUNS_MAX_AGE_DAYS", "-3"),
        ("PLANFORGE_RUNS_MAX_CONTEXT_BYTES", "1.5"),
    ],
)
def test_a_malformed_setting_names_its_variable(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        _ = store.runs
    assert caught.value.variable == variable
    assert caught.value.message.startswith(f"{variable}={value!r} is not valid")


def test_settings_have_their_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_AGE_DAYS", "MAX_PER_USER", "MAX_TOTAL", "MAX_CONTEXT_BYTES"):
        monkeypatch.delenv(f"PLANFORGE_RUNS_{name}", raising=False)
    settings = load_run_settings()
    assert (settings.max_age_days, settings.max_per_user, settings.max_total) == (
        30.0,
        1000,
        100_000,
    )
    assert settings.max_context_bytes == 1024 * 1024
    monkeypatch.setenv("PLANFORGE_RUNS_MAX_PER_USER", "7")
    assert load_run_settings().max_per_user == 7


def _schema_at_0003_with_data(url: str) -> None:
    """A database as planforge with revision 0003 left it: a user and an audit entry."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    engine = create_store_engine(url)
    at = datetime(2026, 6, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            connection.execute(
                text(
                    "INSERT INTO api_users (name, role, token_hash, created_at) "
                    "VALUES ('old-timer', 'admin', :hash, :at)"
                ),
                {"hash": "0" * 64, "at": at},
            )
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, entity, entity_id, detail) "
                    "VALUES (:at, 'old', 'user.create', 'user', '1', '{}')"
                ),
                {"at": at},
            )
    finally:
        engine.dispose()


def test_a_0003_database_gains_the_runs_table_and_keeps_its_data(store_url: str) -> None:
    _schema_at_0003_with_data(store_url)
    with ConfigStore(store_url) as store:
        assert [user.name for user in store.list_users()] == ["old-timer"]
        assert store.audit_log()[-1].actor == "old"
        with store.engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0005"
        store.runs.create(run_id="r1", user="old-timer", objective="o", context={"a": 1})
        assert [run.run_id for run in store.runs.list(user="old-timer")] == ["r1"]
