"""Per-user execution engines: running plans and their events, timeouts, bad arguments."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from planforge.configstore import ConfigStore
from planforge.errors import PlanExecutionError, PlannerError, PlannerNotFound
from planforge.factory import PlannerFactory
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
)
from planforge.runtime.errors import (
    EngineBusy,
    RunTimeout,
)
from tests.runtime._engine_support import (
    BUCKET_TOML,
    PORTFOLIO,
    events_of,
    one_run,
    run,
    settings,
    types,
)

# ---------------------------------------------------------------------- running


def test_run_by_objective_selects_plans_and_reports_three_events_in_order(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "alice")
    plan, context = run(one_run(engines, "alice", "echo this, repeat it", context={"n": 3}))
    assert plan.planner.name == "echo"
    assert len(plan.steps) == 3
    assert types(seen) == [AGENT_STARTED, AGENT_THINKING, AGENT_COMPLETED]
    assert [event.sequence for event in seen] == [1, 2, 3]
    assert {event.run_id for event in seen} == {context.run_id}
    assert {event.user_id for event in seen} == {"alice"}
    started = seen[0].payload
    assert started["agent_name"] == "echo"
    assert started["context"]["selected_by"] == "objective"
    assert started["context"]["objective"] == "echo this, repeat it"
    thinking = seen[1].payload
    assert thinking["step_number"] == 1
    assert thinking["progress_percentage"] == 0.0
    completed = seen[2].payload
    assert completed["agent_name"] == "echo"
    assert completed["result"]["plan_id"] == plan.plan_id
    assert completed["result"]["steps"] == 3
    assert completed["result"]["score"] == 0.5
    assert completed["result"]["improvement"] is None
    assert completed["execution_time_ms"] >= 0.0
    stats = factory.planner_stats("echo")["echo"]
    assert (stats["invocations"], stats["failures"]) == (1, 0)


def test_run_by_planner_name_uses_that_planner(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "alice")
    plan, _ = run(one_run(engines, "alice", "echo this", planner="counter"))
    assert plan.planner.name == "counter"
    assert seen[0].payload["context"]["selected_by"] == "planner"
    assert seen[-1].type == AGENT_COMPLETED


def test_holistic_modules_are_reported_as_tools_with_durations(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "alice")
    plan, context = run(
        one_run(engines, "alice", "Rebalance my portfolio", planner="holistic", context=PORTFOLIO)
    )
    kinds = types(seen)
    assert kinds[0] == AGENT_STARTED
    assert kinds[-1] == AGENT_COMPLETED
    assert [event.sequence for event in seen] == list(range(1, len(seen) + 1))
    executing = [event for event in seen if event.type == TOOL_EXECUTING]
    completed = [event for event in seen if event.type == TOOL_COMPLETED]
    assert len(executing) == len(completed) >= 5
    # every tool_executing is answered by the tool_completed of the same module, right after
    for index, event in enumerate(seen):
        if event.type == TOOL_EXECUTING:
            answer = seen[index + 1]
            assert answer.type == TOOL_COMPLETED
            assert answer.payload["tool_name"] == event.payload["tool_name"]
            assert answer.payload["result"]["ok"] is True
            assert answer.payload["execution_time_ms"] >= 0.0
    names = {event.payload["tool_name"] for event in executing}
    assert any(name.startswith("opportunity_calculators.") for name in names)
    progress = [event.payload for event in seen if event.type == AGENT_THINKING]
    assert progress[-1]["progress_percentage"] == 100.0
    assert [p["step_number"] for p in progress] == list(range(1, len(progress) + 1))
    summary = seen[-1].payload["result"]
    assert summary["plan_id"] == plan.plan_id
    assert summary["steps"] == len(plan.steps) > 0
    assert summary["improvement"] == pytest.approx(plan.metrics["improvement"])
    assert summary["improvement"] > 0
    assert {event.run_id for event in seen} == {context.run_id}


def test_concurrent_holistic_runs_see_only_their_own_module_events(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    alice, bob = events_of(bus, "alice"), events_of(bus, "bob")

    async def both() -> None:
        await asyncio.gather(
            one_run(engines, "alice", "Rebalance", planner="holistic", context=PORTFOLIO),
            one_run(engines, "bob", "Rebalance", planner="holistic", context=PORTFOLIO),
        )

    run(both())
    for seen in (alice, bob):
        assert len({event.run_id for event in seen}) == 1
        assert [event.sequence for event in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].type == AGENT_COMPLETED
        # calculators may be served from the shared calculation cache, generators never are:
        # a module reported twice would be the other run's
        tools = [e.payload["tool_name"] for e in seen if e.type == TOOL_EXECUTING]
        assert len(tools) == len(set(tools))
        assert any(tool.startswith("pattern_generators.") for tool in tools)


def test_run_by_bucket_plans_with_the_buckets_active_configuration(
    factory: PlannerFactory, bus: InProcessEventBus, tmp_path: Path
) -> None:
    with ConfigStore(home=tmp_path / "store") as store:
        version = store.create_new_version("shallow", "Shallow", BUCKET_TOML).config
        store.assign_config_to_bucket("beta-users", version.id)
        engines = ExecutionEngineFactory(factory, bus=bus, store=store, settings=settings())
        seen = events_of(bus, "carol")
        plan, _ = run(
            one_run(engines, "carol", "Rebalance", bucket="beta-users", context=PORTFOLIO)
        )
        run(engines.aclose())
    assert plan.planner.name == "holistic"
    assert 0 < len(plan.steps) <= 2  # the bucket's max_depth, not the default preset's
    details = seen[0].payload["context"]
    assert details["selected_by"] == "bucket"
    assert details["bucket"] == "beta-users"
    assert details["config"] == {
        "id": version.id,
        "name": "shallow",
        "version": 1,
        "digest": version.digest,  # ties the plan to exactly this configuration text
    }
    tools = {e.payload["tool_name"] for e in seen if e.type == TOOL_EXECUTING}
    assert tools == {
        "opportunity_calculators.profit_taking",
        "opportunity_calculators.rebalance_buys",
        "pattern_generators.direct_buy",
        "pattern_generators.single_best",
    }


def test_a_bucket_run_without_a_store_says_what_is_missing(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "carol")
    with pytest.raises(PlannerError, match="no configuration store"):
        run(one_run(engines, "carol", "Rebalance", bucket="beta-users"))
    assert types(seen) == [AGENT_ERROR]
    assert engines.metrics()["engines_active"] == 0


def test_a_failing_planner_emits_agent_error_and_the_factory_records_the_failure(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "dave")
    with pytest.raises(PlanExecutionError, match="no luck today"):
        run(one_run(engines, "dave", "explode", planner="failing"))
    assert types(seen) == [AGENT_STARTED, AGENT_THINKING, AGENT_ERROR]
    error = seen[-1].payload
    assert error["agent_name"] == "failing"
    assert "ValueError: no luck today" in error["error"]
    stats = factory.planner_stats("failing")["failing"]
    assert (stats["invocations"], stats["failures"]) == (1, 1)
    assert "no luck today" in stats["last_error"]
    metrics = engines.metrics()
    assert (metrics["runs_failed"], metrics["runs_succeeded"]) == (1, 0)


def test_an_unknown_planner_is_an_error_event_and_not_a_recorded_failure(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "dave")
    with pytest.raises(PlannerNotFound):
        run(one_run(engines, "dave", "anything", planner="nope"))
    assert types(seen) == [AGENT_ERROR]
    assert seen[0].payload["agent_name"] == "nope"
    assert "No planner named 'nope'" in seen[0].payload["error"]


def test_a_timeout_emits_agent_error_naming_it_and_nothing_after(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    factory.get_planner("slow")  # import it, so the test can open its gate
    gate: threading.Event = sys.modules["rt_slow"].GATE
    seen = events_of(bus, "erin")

    async def scenario() -> None:
        try:
            with pytest.raises(RunTimeout, match=r"did not finish within 0\.2 s"):
                await one_run(engines, "erin", "sleepy", planner="slow", timeout_s=0.2)
        finally:
            gate.set()  # the abandoned thread finishes; asyncio.run joins it on exit

    run(scenario())
    assert types(seen) == [AGENT_STARTED, AGENT_THINKING, AGENT_ERROR]
    error = seen[-1].payload["error"]
    assert "timed out" in error
    assert "PLANFORGE_RUN_TIMEOUT_S" in error
    stats = factory.planner_stats("slow")["slow"]
    assert stats["failures"] == 1
    assert "timed out after 0.2 s" in stats["last_error"]
    metrics = engines.metrics()
    assert metrics["runs_timed_out"] == 1
    assert metrics["engines_active"] == 0


def test_after_a_timeout_the_engine_stays_busy_until_the_abandoned_thread_returns(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    factory.get_planner("slow")
    gate: threading.Event = sys.modules["rt_slow"].GATE

    async def scenario() -> None:
        engine = engines.create_for_user(UserExecutionContext.create("erin"))
        with pytest.raises(RunTimeout):
            await engine.run("sleepy", planner="slow", timeout_s=0.1)
        assert engine.running
        with pytest.raises(EngineBusy, match="timed-out"):
            await engine.run("echo", planner="echo")
        gate.set()
        for _ in range(1000):
            if not engine.running:
                break
            await asyncio.sleep(0.005)
        plan = await engine.run("echo", planner="echo")
        assert plan.planner.name == "echo"

    run(scenario())


def test_bad_run_arguments_are_refused_with_a_clear_error(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    engine = engines.create_for_user(UserExecutionContext.create("frank"))
    with pytest.raises(PlannerError, match="timeout_s must be a positive number"):
        run(engine.run("echo", timeout_s=0))
    with pytest.raises(PlannerError, match="non-empty string"):
        run(engine.run("   "))
    assert engines.cleanup(engine)


def test_an_engine_runs_one_plan_at_a_time(factory: PlannerFactory, bus: InProcessEventBus) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    factory.get_planner("slow")
    gate = sys.modules["rt_slow"].GATE

    async def scenario() -> None:
        engine = engines.create_for_user(UserExecutionContext.create("gina"))
        first = asyncio.create_task(engine.run("sleepy", planner="slow"))
        while not engine.running:
            await asyncio.sleep(0.001)
        with pytest.raises(EngineBusy, match="already running"):
            await engine.run("echo", planner="echo")
        gate.set()
        await first
        assert (await engine.run("echo", planner="echo")).planner.name == "echo"

    run(scenario())
