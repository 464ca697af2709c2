"""The run protocol through the runtime: a third-party planner and the holistic planner.

A planner that declares `accepts_run = True` gets a `Run`: its events reach the user's
stream, the configuration the request chose arrives in `run.config`, and the run's deadline
stops the planner's thread (not only the caller's wait).
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.configstore import ConfigStore
from planforge.factory import PlannerFactory
from planforge.holistic._events import MODULE_STARTED, EngineEvent
from planforge.portfolio.planner import HolisticPortfolioPlanner
from planforge.runtime import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    AGENT_STARTED,
    AGENT_THINKING,
    TOOL_COMPLETED,
    TOOL_EXECUTING,
    ExecutionEngineFactory,
    InProcessEventBus,
    UserExecutionContext,
    load_runtime_settings,
)
from planforge.runtime.errors import RunTimeout
from planforge.settings import load_settings
from tests.runtime._engine_support import events_of, run

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO: dict[str, Any] = json.loads((ROOT / "examples" / "portfolio.json").read_text())

#: A planner as a third party would write it: only `planforge.contract` is imported.
THIRD_PARTY = textwrap.dedent(
    """
    import threading
    from planforge.contract import Planner, PlanStep, RunStopped

    SEEN = {}
    STOPPED = threading.Event()


    class Steady(Planner):
        name = "steady"
        version = "1.0.0"
        capabilities = ("general",)
        keywords = ("steady", "counting")
        tier = "stable"
        production_ready = True
        reliability_score = 0.8
        description = "counts steps and reports each"
        accepts_run = True

        def plan(self, objective, context, *, run=None):
            SEEN["run"] = run
            SEEN["config"] = None if run is None else run.config
            SEEN["explain"] = None if run is None else run.explain
            SEEN["context"] = dict(context)
            total = int(context.get("steps", 3))
            try:
                for step in range(total):
                    if run is not None:
                        run.check()
                        run.module_started("steady.count", operation="count")
                        run.module_completed("steady.count", 0.5, operation="count")
                        run.progress(step + 1, total, f"counted {step + 1} of {total}")
                        run.emit("steady_private_event", {"step": step})
                    if context.get("slow"):
                        threading.Event().wait(0.01)
            except RunStopped as stopped:
                SEEN["stopped"] = stopped
                STOPPED.set()
                raise
            return self.new_plan(objective, [PlanStep(id="1", action="count")])


    class Plain(Planner):
        name = "plain"
        version = "1.0.0"
        keywords = ("plain",)
        tier = "stable"
        production_ready = True
        reliability_score = 0.8

        def plan(self, objective, context):
            SEEN["plain_context"] = dict(context)
            return self.new_plan(objective, [])
    """
)

BUCKET_TOML = """\
[planner]
max_depth = 2

[opportunity_calculators.profit_taking]
enabled = true
"""


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[PlannerFactory]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "rp_steady.py").write_text(THIRD_PARTY)
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=10.0)
    with PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    ) as built:
        built.register(HolisticPortfolioPlanner)
        yield built
    sys.modules.pop("rp_steady", None)


@pytest.fixture
def bus() -> Iterator[InProcessEventBus]:
    made = InProcessEventBus(buffer_size=1000)
    yield made
    made.close()


def seen_by_plugin(factory: PlannerFactory) -> dict[str, Any]:
    factory.get_planner("steady")  # imported, so its module is there to read
    seen: dict[str, Any] = sys.modules["rp_steady"].SEEN
    return seen


async def one_run(engines: ExecutionEngineFactory, user_id: str, objective: str, **kw: Any) -> Any:
    async with engines.user_execution_scope(UserExecutionContext.create(user_id)) as engine:
        return await engine.run(objective, **kw)


def test_a_third_party_planners_events_reach_the_users_stream(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=load_runtime_settings())
    seen = events_of(bus, "ana")
    run(one_run(engines, "ana", "count", planner="steady", context={"steps": 2}))
    kinds = [event.type for event in seen]
    assert kinds == [
        AGENT_STARTED,
        AGENT_THINKING,  # the runtime's own "planning with steady"
        TOOL_EXECUTING,
        TOOL_COMPLETED,
        AGENT_THINKING,
        TOOL_EXECUTING,
        TOOL_COMPLETED,
        AGENT_THINKING,
        AGENT_COMPLETED,  # the planner's private event type is not the user's business
    ]
    tool = seen[3].payload
    assert tool["tool_name"] == "steady.count"
    assert tool["result"] == {"ok": True, "operation": "count", "slow": False}
    assert tool["execution_time_ms"] == 0.5
    thinking = [event.payload for event in seen if event.type == AGENT_THINKING][1:]
    assert [p["reasoning"] for p in thinking] == ["counted 1 of 2", "counted 2 of 2"]
    assert [p["progress_percentage"] for p in thinking] == [50.0, 100.0]
    run_object = seen_by_plugin(factory)["run"]
    assert run_object.run_id == seen[0].run_id
    assert run_object.deadline is not None  # the run's timeout reached the planner


def test_the_configuration_a_user_chose_arrives_in_the_run_not_the_context(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=load_runtime_settings())
    context = {"steps": 1, "planner_config": "conservative"}
    run(one_run(engines, "ana", "count", planner="steady", context=context))
    seen = seen_by_plugin(factory)
    assert seen["config"] == "conservative"
    assert seen["context"] == {"steps": 1}
    # a planner that did not declare the protocol gets the context as the user sent it
    run(one_run(engines, "ana", "plain", planner="plain", context=context))
    assert seen["plain_context"] == context


def test_a_request_to_explain_arrives_in_the_run_and_never_in_the_context(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=load_runtime_settings())
    run(one_run(engines, "ana", "count", planner="steady", context={"steps": 1}))
    seen = seen_by_plugin(factory)
    assert seen["explain"] is False
    context = {"steps": 1, "planner_explain": True}
    run(one_run(engines, "ana", "count", planner="steady", context=context))
    assert seen["explain"] is True
    assert seen["context"] == {"steps": 1}
    # a planner without the protocol cannot be asked: the key never reaches it either
    run(one_run(engines, "ana", "plain", planner="plain", context=context))
    assert seen["plain_context"] == {"steps": 1}


def test_a_buckets_configuration_arrives_in_the_run_and_wins(
    factory: PlannerFactory, bus: InProcessEventBus, tmp_path: Path
) -> None:
    with ConfigStore(home=tmp_path / "store") as store:
        version = store.create_new_version("shallow", "Shallow", BUCKET_TOML).config
        store.assign_config_to_bucket("beta", version.id)
        engines = ExecutionEngineFactory(
            factory, bus=bus, store=store, settings=load_runtime_settings()
        )
        context = {"steps": 1, "planner_config": "aggressive"}
        run(one_run(engines, "ana", "count", planner="steady", bucket="beta", context=context))
        run(engines.aclose())
    seen = seen_by_plugin(factory)
    assert seen["config"] == BUCKET_TOML
    assert "planner_config" not in seen["context"]


def test_a_third_party_planner_sees_the_deadline_and_its_thread_stops(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=load_runtime_settings())
    factory.get_planner("steady")
    stopped: threading.Event = sys.modules["rp_steady"].STOPPED
    seen = events_of(bus, "ana")

    async def scenario() -> None:
        engine = engines.create_for_user(UserExecutionContext.create("ana"))
        context = {"steps": 100_000, "slow": True}  # 1000 s of work without the deadline
        with pytest.raises(RunTimeout):
            await engine.run("count", planner="steady", context=context, timeout_s=0.2)
        for _ in range(400):
            if not engine.running:
                break
            await asyncio.sleep(0.005)
        assert not engine.running  # the planner's thread returned
        engines.cleanup(engine)

    run(scenario())
    assert stopped.is_set()
    reason = sys.modules["rp_steady"].SEEN["stopped"]
    assert "deadline passed" in str(reason) or "timed out after 0.2 s" in str(reason)
    assert seen[-1].type == AGENT_ERROR  # nothing after the timeout's error event
    assert engines.metrics()["runs_timed_out"] == 1


def test_the_holistic_planner_stops_at_the_runs_deadline(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    """A real portfolio, the real planner, a timeout shorter than the plan takes: the
    planner's thread stops at the next stage instead of planning on unseen."""
    engines = ExecutionEngineFactory(factory, bus=bus, settings=load_runtime_settings())
    planner = factory.get_planner("holistic")
    assert isinstance(planner, HolisticPortfolioPlanner)
    run_events: list[EngineEvent] = []
    first_module = threading.Event()

    def slow_first_module(event: EngineEvent) -> None:
        """Holds the planning thread in its first module for longer than the timeout."""
        run_events.append(event)
        if event.type == MODULE_STARTED and not first_module.is_set():
            first_module.set()
            time.sleep(0.3)

    unsubscribe = planner.events.subscribe(slow_first_module)

    async def scenario() -> float:
        engine = engines.create_for_user(UserExecutionContext.create("ana"))
        with pytest.raises(RunTimeout):
            await engine.run("Rebalance", planner="holistic", context=PORTFOLIO, timeout_s=0.1)
        timed_out = time.perf_counter()
        for _ in range(400):
            if not engine.running:
                break
            await asyncio.sleep(0.005)
        assert not engine.running  # the planning thread returned
        engines.cleanup(engine)
        return time.perf_counter() - timed_out

    try:
        stopped_after = run(scenario())
    finally:
        unsubscribe()
    assert first_module.is_set()
    assert stopped_after < 1.0
    kinds = [event.type for event in run_events]
    started = [event for event in run_events if event.type == MODULE_STARTED]
    assert len(started) == 1  # stopped before the second module, not after the last
    assert "sequence_generation_started" not in kinds
    assert "evaluation_started" not in kinds
    assert "planning_completed" not in kinds
