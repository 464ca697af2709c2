"""The run registry: owners only, newest first, bounded per user and in users."""

from __future__ import annotations

import pytest

from planforge.server._runs import COMPLETED, FAILED, RUNNING, RunRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_run_goes_from_running_to_completed_with_its_plan() -> None:
    registry = RunRegistry(clock=Clock())
    started = registry.start("alice", "r1", "echo", planner="echo")
    assert started.status == RUNNING
    assert started.finished_at is None
    done = registry.complete("alice", "r1", {"plan_id": "p"})
    assert done is not None
    assert done.status == COMPLETED
    assert done.plan == {"plan_id": "p"}
    assert done.finished_at is not None
    assert done.finished_at > done.created_at
    assert started.status == RUNNING  # a reader's copy never changes under it
    assert registry.get("alice", "r1") == done


def test_a_failed_run_keeps_its_error() -> None:
    registry = RunRegistry()
    registry.start("alice", "r1", "echo")
    registry.fail("alice", "r1", "RunTimeout", "too slow")
    record = registry.get("alice", "r1")
    assert record is not None
    assert record.status == FAILED
    assert record.to_dict()["error"] == {
        "error": "RunTimeout",
        "message": "too slow",
        "input_error": False,
    }
    assert record.to_dict()["plan"] is None


def test_a_run_failed_by_its_input_says_so() -> None:
    registry = RunRegistry()
    registry.start("alice", "r1", "echo")
    registry.fail("alice", "r1", "ContextError", "context: cash: bad", input_error=True)
    record = registry.get("alice", "r1")
    assert record is not None
    assert record.to_dict()["error"]["input_error"] is True


def test_another_user_never_sees_or_finishes_a_run() -> None:
    registry = RunRegistry()
    registry.start("alice", "r1", "echo")
    assert registry.get("bob", "r1") is None
    assert registry.list("bob") == []
    assert registry.complete("bob", "r1", {}) is None
    record = registry.get("alice", "r1")
    assert record is not None
    assert record.status == RUNNING


def test_runs_are_listed_newest_first() -> None:
    registry = RunRegistry()
    for run_id in ("r1", "r2", "r3"):
        registry.start("alice", run_id, "echo")
    assert [record.run_id for record in registry.list("alice")] == ["r3", "r2", "r1"]


def test_a_user_keeps_at_most_n_runs_dropping_the_oldest_finished_first() -> None:
    registry = RunRegistry(max_runs_per_user=3)
    registry.start("alice", "r1", "echo")  # still running
    registry.start("alice", "r2", "echo")
    registry.complete("alice", "r2", {})
    registry.start("alice", "r3", "echo")
    registry.start("alice", "r4", "echo")
    assert [record.run_id for record in registry.list("alice")] == ["r4", "r3", "r1"]
    registry.start("alice", "r5", "echo")  # all running now: the oldest goes
    assert [record.run_id for record in registry.list("alice")] == ["r5", "r4", "r3"]
    assert len(registry) == 3
    assert registry.complete("alice", "r1", {}) is None  # a dropped run stays dropped


def test_at_most_m_users_are_kept_least_recently_active_first_out() -> None:
    registry = RunRegistry(max_users=2)
    registry.start("alice", "a1", "echo")
    registry.start("bob", "b1", "echo")
    registry.start("alice", "a2", "echo")  # alice is now the most recent
    registry.start("carol", "c1", "echo")
    assert registry.list("bob") == []
    assert [record.run_id for record in registry.list("alice")] == ["a2", "a1"]
    assert len(registry) == 3


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bounds_must_be_positive_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="integer >= 1"):
        RunRegistry(max_runs_per_user=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer >= 1"):
        RunRegistry(max_users=bad)  # type: ignore[arg-type]
