"""`PlannerFactory.run_plan` and the run protocol: the run reaches a planner that declared it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.contract import Run, RunEvent
from planforge.errors import PlanExecutionError, RunStopped
from planforge.factory import PlannerFactory
from planforge.settings import load_settings

PLUGINS = textwrap.dedent(
    """
    import time

    from planforge.contract import Planner, PlanStep


    class Aware(Planner):
        name = "aware"
        capabilities = ("count",)
        accepts_run = True

        def plan(self, objective, context, *, run=None):
            config = None if run is None else run.config
            for step in range(3):
                if run is not None:
                    run.check()
                    run.progress(step + 1, 3, "counted")
                if context.get("slow"):
                    time.sleep(0.05)
            step = PlanStep(id="1", action="count", params={"config": config})
            return self.new_plan(objective, [step])


    class Plain(Planner):
        name = "plain"
        capabilities = ("count",)

        def plan(self, objective, context):
            step = PlanStep(id="1", action="count", params=dict(context))
            return self.new_plan(objective, [step])
    """
)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[PlannerFactory]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "counting.py").write_text(PLUGINS)
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=5.0)
    with PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    ) as built:
        yield built


def test_the_run_carries_the_configuration_and_the_events(factory: PlannerFactory) -> None:
    seen: list[RunEvent] = []
    run = Run("r1", config="conservative", sink=seen.append)
    plan = factory.run_plan("count", {}, planner="aware", run=run)
    assert plan.steps[0].params == {"config": "conservative"}
    assert [(e.type, e.payload["done"]) for e in seen] == [("progress", n) for n in (1, 2, 3)]
    assert {e.run_id for e in seen} == {"r1"}


def test_a_planner_without_the_protocol_is_called_as_before(factory: PlannerFactory) -> None:
    run = Run("r2", config="conservative")
    plan = factory.run_plan("count", {"a": 1}, planner="plain", run=run)
    assert plan.steps[0].params == {"a": 1}  # nothing added to its context


def test_a_run_past_its_deadline_stops_the_planner_and_counts_as_its_failure(
    factory: PlannerFactory,
) -> None:
    run = Run("r3", timeout_s=0.01)
    with pytest.raises(RunStopped) as stopped:
        factory.run_plan("count", {"slow": True}, planner="aware", run=run)
    assert "deadline" in stopped.value.message
    stats = factory.planner_stats("aware")["aware"]
    assert stats["failures"] == 1
    assert not isinstance(stopped.value, PlanExecutionError)
