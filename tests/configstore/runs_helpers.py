"""Shared pieces of the runs tests: a clock the test moves, and a run store on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from planforge.configstore import ConfigStore, RunStore, StoredRun, load_run_settings

__all__ = ["START", "Clock", "finished_run", "run_store"]

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The run store's time, moved by the test: lease expiry without sleeping."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def run_store(store: ConfigStore, clock: Clock, **settings: Any) -> RunStore:
    return RunStore(store, settings=load_run_settings(**settings), clock=clock)


def finished_run(runs: RunStore, run_id: str, user: str = "ann", **create: Any) -> StoredRun:
    """A run created, claimed and completed; its plan names its id."""
    runs.create(run_id=run_id, user=user, objective="o", context={"n": run_id}, **create)
    assert runs.claim(run_id, "replica-a", 60) is not None
    assert runs.complete(run_id, "replica-a", {"plan_id": run_id, "steps": []})
    found = runs.get(run_id)
    assert found is not None
    return found
