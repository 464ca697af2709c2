"""`RunStore.record_finished`: ended runs from elsewhere (a batch) in one transaction, on a real
SQLite file and the real PostgreSQL server; a refused group writes nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from planforge.configstore import (
    COMPLETED,
    FAILED,
    ConfigStore,
    FinishedRun,
    InvalidInput,
    RunContextTooLarge,
    RunExists,
)
from tests.configstore.runs_helpers import Clock, run_store

ENDED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _run(number: int, **changes: object) -> FinishedRun:
    run = FinishedRun(
        run_id=f"batch-t-{number}",
        user="nightly",
        objective="Rebalance my portfolio",
        context={"cash": number},
        started_at=ENDED - timedelta(seconds=0.5),
        finished_at=ENDED,
        planner="holistic",
        plan={"plan_id": f"p{number}", "steps": []},
    )
    return run._replace(**changes)  # type: ignore[arg-type]


def test_a_group_is_recorded_as_ordinary_runs(store: ConfigStore) -> None:
    digest = hashlib.sha256(b"conservative").hexdigest()
    failed = _run(2, plan=None, planner=None, error={"error": "ContextError", "message": "bad"})
    written = store.runs.record_finished([_run(1, config_digest=digest, worker="w:1"), failed])
    assert written == 2
    done = store.runs.get("batch-t-1", with_context=True)
    assert done is not None
    assert (done.status, done.user, done.planner, done.attempts) == (
        COMPLETED,
        "nightly",
        "holistic",
        1,
    )
    assert done.plan == {"plan_id": "p1", "steps": []}
    assert done.context == {"cash": 1}
    assert (done.config_digest, done.worker, done.finished_at) == (digest, "w:1", ENDED)
    bad = store.runs.get("batch-t-2")
    assert bad is not None
    assert (bad.status, bad.error) == (FAILED, {"error": "ContextError", "message": "bad"})
    listed = [run.run_id for run in store.runs.list(user="nightly")]
    assert sorted(listed) == ["batch-t-1", "batch-t-2"]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"run_id": "no spaces"}, InvalidInput),
        ({"plan": None}, InvalidInput),
        ({"config_digest": "planner-default"}, InvalidInput),
        ({"context": {"blob": "x" * 3000}}, RunContextTooLarge),
    ],
)
def test_one_refused_run_writes_none_of_its_group(
    store: ConfigStore, bad: dict[str, object], error: type[Exception]
) -> None:
    runs = run_store(store, Clock(), max_context_bytes=1024)
    noisy = {"blob": "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))}
    if "context" in bad:
        bad = {"context": noisy}
    with pytest.raises(error):
        runs.record_finished([_run(1), _run(2, **bad)])
    assert runs.get("batch-t-1") is None


def test_an_id_already_recorded_is_refused(store: ConfigStore) -> None:
    store.runs.record_finished([_run(1)])
    with pytest.raises(RunExists):
        store.runs.record_finished([_run(3), _run(1)])
    assert store.runs.get("batch-t-3") is None
