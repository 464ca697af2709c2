"""The runs table through `RunStore`: admission, claiming, finishing, cancellation rules,
listing, and the inputs it refuses (refusing writes nothing)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest

from planforge.configstore import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    ConfigStore,
    InvalidInput,
    RunContextTooLarge,
    RunExists,
    RunFinished,
    RunNotFound,
    RunStore,
)
from planforge.configstore._run_records import decode_context, encode_context
from tests.configstore.runs_helpers import START, Clock, finished_run, run_store

CONTEXT = {"holdings": [{"symbol": "ACME", "qty": 3}], "cash": 100.5, "name": "épargne"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs(store: ConfigStore, clock: Clock) -> RunStore:
    return run_store(store, clock)


def _queue(runs: RunStore, run_id: str, user: str = "ann", **extra: object) -> None:
    runs.create(run_id=run_id, user=user, objective="Rebalance", context=CONTEXT, **extra)  # type: ignore[arg-type]


def test_a_run_goes_from_queued_to_running_to_completed(runs: RunStore, clock: Clock) -> None:
    created = runs.create(
        run_id="r1",
        user="ann",
        objective="Rebalance",
        context=CONTEXT,
        request_id="req-1",
        planner="holistic",
        bucket="core",
        context_kind="portfolio",
        timeout_s=30,
    )
    assert (created.status, created.attempts, created.created_at) == (QUEUED, 0, START)
    assert created.context is None
    assert created.plan is None
    clock.advance(2)
    claimed = runs.claim("r1", "replica-a", 60)
    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == (RUNNING, 1, "replica-a")
    assert claimed.lease_expires_at == clock.now + timedelta(seconds=60)
    assert runs.record_planner(
        "r1",
        planner="holistic",
        planner_version="2.1",
        config_id=4,
        config_version=2,
        config_digest="a" * 64,
        worker="w-1",
    )
    clock.advance(3)
    plan = {"plan_id": "p1", "steps": [{"id": "s1", "action": "buy"}], "score": 0.5}
    assert runs.complete("r1", "replica-a", plan)
    assert not runs.complete("r1", "replica-a", plan)  # a run completes once
    assert not runs.fail("r1", "replica-a", {"error": "X", "message": "late"})
    done = runs.get("r1", with_context=True)
    assert done is not None
    assert (done.status, done.plan, done.context, done.error) == (COMPLETED, plan, CONTEXT, None)
    assert (done.planner_version, done.config_id, done.config_version, done.worker) == (
        "2.1",
        4,
        2,
        "w-1",
    )
    assert (done.request_id, done.bucket, done.context_kind, done.timeout_s) == (
        "req-1",
        "core",
        "portfolio",
        30.0,
    )
    assert done.duration_s == 3.0
    assert done.lease_expires_at is None
    assert done.context_digest == encode_context(CONTEXT)[1]
    data = json.loads(json.dumps(done.to_dict(with_context=True)))
    assert data["created_at"] == START.isoformat()
    assert data["context"] == CONTEXT
    assert "plan" not in done.to_dict(with_plan=False)
    assert "context" not in done.to_dict()


def test_the_context_is_canonical_compressed_json(runs: RunStore) -> None:
    _queue(runs, "r1")
    reordered = dict(reversed(list(CONTEXT.items())))
    blob, digest = encode_context(reordered)
    run = runs.get("r1")
    assert run is not None
    assert run.context is None
    assert run.context_digest == digest
    assert run.context_bytes == len(blob)
    assert decode_context(blob) == CONTEXT


def test_only_the_lease_owner_renews_or_finishes(runs: RunStore, clock: Clock) -> None:
    _queue(runs, "r1")
    assert runs.claim("r1", "replica-a", 10) is not None
    assert not runs.renew("r1", "replica-b", 10)
    assert not runs.complete("r1", "replica-b", {"steps": []})
    clock.advance(5)
    assert runs.renew("r1", "replica-a", 10)
    run = runs.get("r1")
    assert run is not None
    assert run.lease_expires_at == clock.now + timedelta(seconds=10)
    assert runs.fail("r1", "replica-a", {"error": "PlannerTimeout", "message": "too slow"})
    failed = runs.get("r1")
    assert failed is not None
    assert failed.status == FAILED
    assert failed.error == {"error": "PlannerTimeout", "message": "too slow"}
    assert not runs.renew("r1", "replica-a", 10)  # ended: the runner learns to stop


def test_a_run_is_claimed_once(runs: RunStore) -> None:
    _queue(runs, "r1")
    assert runs.claim("r1", "replica-a", 10) is not None
    assert runs.claim("r1", "replica-b", 10) is None
    assert runs.claim("missing", "replica-b", 10) is None
    assert runs.claim("bad id!", "replica-b", 10) is None


def test_claim_queued_takes_the_oldest_first(runs: RunStore, clock: Clock) -> None:
    for number in range(5):
        _queue(runs, f"r{number}")
        clock.advance(1)
    assert runs.claim("r1", "replica-a", 10) is not None
    taken = runs.claim_queued("replica-b", 10, limit=2)
    assert [run.run_id for run in taken] == ["r0", "r2"]
    assert {run.lease_owner for run in taken} == {"replica-b"}
    assert [run.run_id for run in runs.claim_queued("replica-b", 10, limit=10)] == ["r3", "r4"]
    assert runs.claim_queued("replica-b", 10, limit=10) == []


def test_a_duplicate_run_id_is_refused(runs: RunStore, store: ConfigStore) -> None:
    _queue(runs, "r1")
    with pytest.raises(RunExists, match="'r1' is already recorded"):
        _queue(runs, "r1", user="bob")
    run = runs.get("r1")
    assert run is not None
    assert run.user == "ann"
    assert store.count_rows()["runs"] == 1


def test_a_context_too_large_is_refused_and_nothing_written(
    store: ConfigStore, clock: Clock
) -> None:
    runs = run_store(store, clock, max_context_bytes=2048)
    noise = {"blob": secrets.token_hex(4096)}  # hex compresses to about half: over 2048
    with pytest.raises(RunContextTooLarge) as caught:
        runs.create(run_id="big", user="ann", objective="o", context=noise)
    message = caught.value.message
    assert "2048 bytes" in message
    assert "PLANFORGE_RUNS_MAX_CONTEXT_BYTES" in message
    assert "Nothing was stored" in message
    assert store.count_rows()["runs"] == 0
    runs.create(run_id="small", user="ann", objective="o", context={"blob": "x" * 4096})


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("run_id", {"run_id": "has space"}),
        ("user", {"user": ""}),
        ("request_id", {"request_id": "x" * 129}),
        ("context", {"context": ["not", "a", "dict"]}),
        ("context", {"context": {"when": {1, 2}}}),
        ("context", {"context": {"x": float("nan")}}),
        ("objective", {"objective": None}),
        ("bucket", {"bucket": " core"}),
        ("timeout_s", {"timeout_s": -1}),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    runs: RunStore, store: ConfigStore, field: str, arguments: dict[str, object]
) -> None:
    given: dict[str, object] = {"run_id": "r1", "user": "ann", "objective": "o", "context": {}}
    given.update(arguments)
    with pytest.raises(InvalidInput) as caught:
        runs.create(**given)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert store.count_rows()["runs"] == 0


def test_bad_arguments_of_the_transitions_are_refused(runs: RunStore) -> None:
    _queue(runs, "r1")
    with pytest.raises(InvalidInput, match="lease_s"):
        runs.claim("r1", "replica-a", 0)
    assert runs.claim("r1", "replica-a", 10) is not None
    with pytest.raises(InvalidInput, match="status"):
        runs.fail("r1", "replica-a", {"error": "X", "message": "m"}, status="completed")
    with pytest.raises(InvalidInput, match="error"):
        runs.fail("r1", "replica-a", {"message": "no type"})
    with pytest.raises(InvalidInput, match="plan"):
        runs.complete("r1", "replica-a", {"score": float("inf")})
    with pytest.raises(InvalidInput, match="config_digest"):
        runs.record_planner("r1", planner="p", config_digest="nothex")
    with pytest.raises(InvalidInput, match="limit"):
        runs.list(limit=0)
    with pytest.raises(InvalidInput, match="status"):
        runs.list(status="done")
    run = runs.get("r1")
    assert run is not None
    assert run.status == RUNNING
    assert run.planner is None


def test_record_planner_never_rewrites_an_ended_run(runs: RunStore) -> None:
    finished_run(runs, "r1", planner="first")
    assert not runs.record_planner("r1", planner="second")
    assert not runs.record_planner("missing", planner="second")
    run = runs.get("r1")
    assert run is not None
    assert run.planner == "first"


# -- cancellation -------------------------------------------------------------------------


def test_cancelling_a_queued_run_ends_it_before_it_starts(runs: RunStore) -> None:
    _queue(runs, "r1")
    cancelled = runs.request_cancel("r1", user="ann")
    assert (cancelled.status, cancelled.cancel_requested) == (CANCELLED, True)
    assert cancelled.error is not None
    assert cancelled.error["error"] == "RunCancelled"
    assert cancelled.finished_at is not None
    assert runs.claim("r1", "replica-a", 10) is None
    assert runs.claim_queued("replica-a", 10, limit=5) == []


def test_cancelling_a_running_run_asks_its_runner(runs: RunStore) -> None:
    _queue(runs, "r1")
    assert runs.claim("r1", "replica-a", 10) is not None
    asked = runs.request_cancel("r1", user="ann")
    assert (asked.status, asked.cancel_requested) == (RUNNING, True)
    again = runs.request_cancel("r1", user="ann")  # asking twice changes nothing more
    assert (again.status, again.cancel_requested) == (RUNNING, True)
    error = {"error": "RunCancelled", "message": "stopped on request"}
    assert runs.fail("r1", "replica-a", error, status=CANCELLED)
    ended = runs.get("r1")
    assert ended is not None
    assert (ended.status, ended.error) == (CANCELLED, error)


def test_another_users_run_looks_missing_but_an_admin_may_cancel_it(
    runs: RunStore, store: ConfigStore
) -> None:
    _queue(runs, "r1", user="ann")
    with pytest.raises(RunNotFound, match="No run 'r1'"):
        runs.request_cancel("r1", user="bob")
    with pytest.raises(RunNotFound):
        runs.request_cancel("nope", user="ann")
    run = runs.get("r1")
    assert run is not None
    assert (run.status, run.cancel_requested) == (QUEUED, False)
    assert runs.get("r1", user="bob") is None
    assert runs.request_cancel("r1", user="root", admin=True).status == CANCELLED
    audit = [entry for entry in store.audit_log() if entry.action == "run.cancel"]
    assert [(entry.actor, entry.entity_id, entry.detail["owner"]) for entry in audit] == [
        ("root", "r1", "ann")
    ]


def test_cancelling_an_ended_run_says_it_ended(runs: RunStore) -> None:
    finished_run(runs, "r1")
    with pytest.raises(RunFinished, match=r"already ended \(completed\)"):
        runs.request_cancel("r1", user="ann")
    with pytest.raises(RunFinished):
        runs.request_cancel("r1", user="root", admin=True)
    run = runs.get("r1")
    assert run is not None
    assert (run.status, run.cancel_requested) == (COMPLETED, False)


# -- listing ------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters(runs: RunStore, clock: Clock) -> None:
    finished_run(runs, "a1", user="ann", bucket="core")
    clock.advance(60)
    _queue(runs, "b1", user="bob", bucket="core")
    clock.advance(60)
    middle = clock.now
    _queue(runs, "a2", user="ann", bucket="satellite")
    clock.advance(60)
    _queue(runs, "a3", user="ann")
    assert [run.run_id for run in runs.list()] == ["a3", "a2", "b1", "a1"]
    assert [run.run_id for run in runs.list(user="ann")] == ["a3", "a2", "a1"]
    assert [run.run_id for run in runs.list(bucket="core")] == ["b1", "a1"]
    assert [run.run_id for run in runs.list(status=COMPLETED)] == ["a1"]
    assert [run.run_id for run in runs.list(since=middle)] == ["a3", "a2"]
    assert [run.run_id for run in runs.list(user="ann", limit=2)] == ["a3", "a2"]
    assert runs.list(user="carol") == []
    assert runs.list(user="nul\x00") == []
    assert runs.list(bucket="nul\x00") == []
    assert runs.get("a1", user="nul\x00") is None
    listed = runs.list(status=COMPLETED)[0]
    assert listed.plan is None
    assert listed.context is None
    with pytest.raises(InvalidInput, match="since"):
        runs.list(since=middle.replace(tzinfo=None))


def test_the_store_face_gives_a_run_store(store: ConfigStore) -> None:
    assert store.runs is store.runs
    store.runs.create(run_id="r1", user="ann", objective="o", context={})
    assert [run.run_id for run in store.runs.list()] == ["r1"]


def test_a_run_recorded_as_claimed_is_running_for_its_owner(runs: RunStore, clock: Clock) -> None:
    made = runs.create(
        run_id="r-claimed", user="ann", objective="go", context={}, owner="replica-a", lease_s=30
    )
    assert made.status == "running"
    assert made.attempts == 1
    assert made.lease_owner == "replica-a"
    stored = runs.get("r-claimed")
    assert stored is not None
    assert stored.status == "running"
    assert stored.lease_expires_at == made.lease_expires_at
    assert runs.claim("r-claimed", "replica-b", 30) is None  # nobody claims it twice
    assert runs.complete("r-claimed", "replica-a", {"steps": []})
    with pytest.raises(InvalidInput):
        runs.create(run_id="r-bad", user="ann", objective="go", context={}, owner="a", lease_s=0)
    assert runs.get("r-bad") is None


def test_a_run_ends_with_its_planner_details_in_one_write(runs: RunStore) -> None:
    runs.create(run_id="r-d", user="ann", objective="go", context={}, owner="a", lease_s=30)
    details = {"planner": "holistic", "planner_version": "2.0", "worker": "process:42"}
    assert runs.complete("r-d", "a", {"steps": []}, details=details)
    stored = runs.get("r-d")
    assert stored is not None
    assert (stored.planner, stored.planner_version, stored.worker) == (
        "holistic",
        "2.0",
        "process:42",
    )
    runs.create(run_id="r-e", user="ann", objective="go", context={}, owner="a", lease_s=30)
    with pytest.raises(InvalidInput):
        runs.fail("r-e", "a", {"error": "E", "message": "m"}, details={"colour": "red"})
    still = runs.get("r-e")
    assert still is not None
    assert still.status == "running"  # a bad detail wrote nothing
