"""Per-user execution engines: running plans, their events, limits, cleanup and reaping."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from planforge.configstore import ConfigStore
from planforge.contract import Plan
from planforge.errors import PlanExecutionError, PlannerError, PlannerNotFound
from planforge.factory import PlannerFactory
from planforge.portfolio.planner import HolisticPortfolioPlanner
from planforge.runtime import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    AGENT_STARTED,
    AGENT_THINKING,
    TOOL_COMPLETED,
    TOOL_EXECUTING,
    ExecutionEngine,
    ExecutionEngineFactory,
    InProcessEventBus,
    RuntimeEvent,
    RuntimeSettings,
    UserExecutionContext,
    load_runtime_settings,
)
from planforge.runtime._metrics import DurationWindow
from planforge.runtime.errors import (
    EngineBusy,
    EngineClosed,
    RunLimitExceeded,
    RunTimeout,
    UserCapacityExceeded,
)
from planforge.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO: dict[str, Any] = json.loads((ROOT / "examples" / "portfolio.json").read_text())
T = TypeVar("T")

BUCKET_TOML = """\
[planner]
max_depth = 2

[opportunity_calculators.profit_taking]
enabled = true

[opportunity_calculators.rebalance_buys]
enabled = true

[pattern_generators.single_best]
enabled = true

[pattern_generators.direct_buy]
enabled = true
"""


def planner_source(
    cls: str,
    name: str,
    keywords: tuple[str, ...],
    plan_body: str,
    *,
    stateful: bool = False,
    prelude: str = "",
) -> str:
    return textwrap.dedent(
        f"""
import threading
from planforge.contract import Planner, PlanStep
{prelude}

class {cls}(Planner):
    name = {name!r}
    version = "1.0.0"
    capabilities = ("general",)
    keywords = {keywords!r}
    tier = "stable"
    production_ready = True
    reliability_score = 0.8
    stateful = {stateful!r}
    description = "planner {name}"

    def plan(self, objective, context):
{textwrap.indent(textwrap.dedent(plan_body), "        ")}
"""
    )


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "rt_echo.py").write_text(
        planner_source(
            "Echo",
            "echo",
            ("echo", "repeat"),
            "steps = [PlanStep(id=str(i), action='say') for i in range(context.get('n', 1))]\n"
            "return self.new_plan(objective, steps, score=0.5)",
        )
    )
    (directory / "rt_failing.py").write_text(
        planner_source("Failing", "failing", ("explode",), "raise ValueError('no luck today')")
    )
    (directory / "rt_slow.py").write_text(
        planner_source(
            "Slow",
            "slow",
            ("sleepy",),
            "GATE.wait(10)\nreturn self.new_plan(objective, [])",
            prelude="GATE = threading.Event()",
        )
    )
    (directory / "rt_counter.py").write_text(
        planner_source(
            "Counter",
            "counter",
            ("count",),
            "self.calls = getattr(self, 'calls', 0) + 1\n"
            "return self.new_plan(objective, [PlanStep(id=str(i), action='tick')"
            " for i in range(self.calls)])",
            stateful=True,
        )
    )
    return directory


@pytest.fixture
def factory(plugin_dir: Path, tmp_path: Path) -> Iterator[PlannerFactory]:
    settings = load_settings(plugin_dirs=(plugin_dir,), sandbox_timeout_s=10.0)
    with PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    ) as built:
        built.register(HolisticPortfolioPlanner)
        yield built
    for module in ("rt_echo", "rt_failing", "rt_slow", "rt_counter"):
        sys.modules.pop(module, None)


@pytest.fixture
def bus() -> Iterator[InProcessEventBus]:
    made = InProcessEventBus(buffer_size=1000)
    yield made
    made.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**overrides: Any) -> RuntimeSettings:
    return load_runtime_settings(**overrides)


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def events_of(bus: InProcessEventBus, user_id: str) -> list[RuntimeEvent]:
    collected: list[RuntimeEvent] = []
    bus.subscribe(user_id, collected.append)
    return collected


def types(events: list[RuntimeEvent]) -> list[str]:
    return [event.type for event in events]


async def one_run(
    engines: ExecutionEngineFactory, user_id: str, objective: str, **kwargs: Any
) -> tuple[Plan, UserExecutionContext]:
    context = UserExecutionContext.create(user_id)
    async with engines.user_execution_scope(context) as engine:
        plan = await engine.run(objective, **kwargs)
    return plan, context


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


# ---------------------------------------------------------------------- limits and cleanup


def test_the_user_over_the_limit_is_rejected_while_another_user_is_not(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_runs_per_user=2))
    held = [engines.create_for_user(UserExecutionContext.create("alice")) for _ in range(2)]
    with pytest.raises(RunLimitExceeded, match=r"'alice' already has 2 .*MAX_RUNS_PER_USER=2"):
        engines.create_for_user(UserExecutionContext.create("alice"))
    other = engines.create_for_user(UserExecutionContext.create("bob"))
    assert engines.active_count("alice") == 2
    assert engines.active_count("bob") == 1
    engines.cleanup(held[0])
    again = engines.create_for_user(UserExecutionContext.create("alice"))
    metrics = engines.metrics()
    assert metrics["limit_rejections"] == 1
    assert metrics["engines_active"] == 3
    assert metrics["peak_concurrent"] == 3
    for engine in (held[1], other, again):
        engines.cleanup(engine)
    assert engines.users_with_engines == 0


def test_child_contexts_count_against_the_same_user(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_runs_per_user=2))
    root = UserExecutionContext.create("alice")
    engines.create_for_user(root)
    engines.create_for_user(root.child())
    with pytest.raises(RunLimitExceeded):
        engines.create_for_user(root.child().child())


def test_cleanup_twice_is_harmless_and_counted_once(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_runs_per_user=1))
    engine = engines.create_for_user(UserExecutionContext.create("alice"))
    assert engines.cleanup(engine) is True
    assert engines.cleanup(engine) is False
    metrics = engines.metrics()
    assert (metrics["engines_created"], metrics["engines_cleaned"]) == (1, 1)
    assert metrics["engines_active"] == 0
    assert engine.closed
    with pytest.raises(EngineClosed, match="cleaned up"):
        run(engine.run("echo"))
    # the slot really is free (a double cleanup would have made the count negative or 2 free)
    engines.create_for_user(UserExecutionContext.create("alice"))
    with pytest.raises(RunLimitExceeded):
        engines.create_for_user(UserExecutionContext.create("alice"))


def test_an_engine_of_another_factory_is_not_cleaned(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    first = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    second = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    engine = first.create_for_user(UserExecutionContext.create("alice"))
    assert second.cleanup(engine) is False
    assert not engine.closed
    assert first.cleanup(engine) is True


def test_the_scope_cleans_up_when_the_body_raises(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    captured: list[ExecutionEngine] = []

    async def scenario() -> None:
        async with engines.user_execution_scope(UserExecutionContext.create("alice")) as engine:
            captured.append(engine)
            assert engines.active_count("alice") == 1
            raise RuntimeError("caller bug")

    with pytest.raises(RuntimeError, match="caller bug"):
        run(scenario())
    assert captured[0].closed
    assert engines.active_count("alice") == 0
    assert engines.metrics()["engines_cleaned"] == 1


def test_contexts_created_in_the_same_millisecond_never_collide(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_runs_per_user=5))
    contexts = [UserExecutionContext.create("alice") for _ in range(5)]
    created = [engines.create_for_user(context) for context in contexts]
    assert len({engine.engine_id for engine in created}) == 5
    assert len({engine.run_id for engine in created}) == 5
    assert engines.cleanup(created[2])
    assert [engine.closed for engine in created] == [False, False, True, False, False]
    assert engines.live_engines("alice") == [created[0], created[1], created[3], created[4]]
    run_ids = [UserExecutionContext.create("alice").run_id for _ in range(10_000)]
    assert len(set(run_ids)) == 10_000
    assert run_ids == sorted(run_ids)


def test_user_state_is_bounded(factory: PlannerFactory, bus: InProcessEventBus) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_users=3))
    held = [engines.create_for_user(UserExecutionContext.create(f"u{i}")) for i in range(3)]
    with pytest.raises(UserCapacityExceeded, match="PLANFORGE_MAX_USERS=3"):
        engines.create_for_user(UserExecutionContext.create("u3"))
    more = engines.create_for_user(UserExecutionContext.create("u0"))  # known user: fine
    for engine in [*held, more]:
        engines.cleanup(engine)
    assert engines.users_with_engines == 0
    assert engines.live_engines() == []
    assert engines.metrics()["capacity_rejections"] == 1
    engines.create_for_user(UserExecutionContext.create("u3"))  # room again


def test_stateful_planners_get_one_instance_per_user_and_the_instances_are_bounded(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings(max_users=2))

    async def scenario() -> list[int]:
        counts = []
        for user in ("alice", "alice", "bob", "alice", "carol"):
            plan, _ = await one_run(engines, user, "count", planner="counter")
            counts.append(len(plan.steps))
        return counts

    # alice's instance counts 1, 2, bob's starts again at 1, alice's own goes on to 3
    assert run(scenario()) == [1, 2, 1, 3, 1]
    assert engines.stateful_instances() == 2  # carol pushed out the least recently used (bob)


# ---------------------------------------------------------------------- reaper


def test_the_reaper_reclaims_idle_engines_and_running_ones_only_when_too_old(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    clock = FakeClock()
    engines = ExecutionEngineFactory(
        factory,
        bus=bus,
        settings=settings(engine_idle_s=30.0, engine_ttl_s=300.0),
        clock=clock,
    )
    factory.get_planner("slow")
    gate = sys.modules["rt_slow"].GATE

    async def scenario() -> None:
        idle = engines.create_for_user(UserExecutionContext.create("alice"))
        busy = engines.create_for_user(UserExecutionContext.create("bob"))
        task = asyncio.create_task(busy.run("sleepy", planner="slow", timeout_s=30))
        while not busy.running:
            await asyncio.sleep(0.001)
        clock.now += 10
        assert engines.reap() == {"idle": 0, "expired": 0}
        clock.now += 25  # 35 s: alice's engine is idle, bob's is running
        assert engines.reap() == {"idle": 1, "expired": 0}
        assert idle.closed
        assert not busy.closed
        clock.now += 300  # bob's engine is older than the TTL: stuck, reclaimed anyway
        assert engines.reap() == {"idle": 0, "expired": 1}
        assert busy.closed
        gate.set()
        await task

    run(scenario())
    metrics = engines.metrics()
    assert (metrics["idle_cleanups"], metrics["timeout_cleanups"]) == (1, 1)
    assert metrics["engines_active"] == 0
    assert engines.users_with_engines == 0


def test_a_recent_run_keeps_an_engine_from_being_idle(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    clock = FakeClock()
    engines = ExecutionEngineFactory(
        factory, bus=bus, settings=settings(engine_idle_s=30.0), clock=clock
    )
    engine = engines.create_for_user(UserExecutionContext.create("alice"))
    clock.now += 25
    run(engine.run("echo", planner="echo"))
    clock.now += 25  # 50 s old, but active 25 s ago
    assert engines.reap() == {"idle": 0, "expired": 0}
    clock.now += 10
    assert engines.reap() == {"idle": 1, "expired": 0}


def test_the_background_reaper_runs_between_start_and_aclose(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    clock = FakeClock()
    engines = ExecutionEngineFactory(
        factory,
        bus=bus,
        settings=settings(engine_idle_s=30.0, reap_interval_s=0.01),
        clock=clock,
    )

    async def scenario() -> None:
        async with engines:
            engine = engines.create_for_user(UserExecutionContext.create("alice"))
            kept = engines.create_for_user(UserExecutionContext.create("bob"))
            clock.now += 31
            kept.last_active = clock.now
            for _ in range(500):
                if engine.closed:
                    break
                await asyncio.sleep(0.01)
            assert engine.closed
            assert not kept.closed
        assert kept.closed  # aclose cleans whatever is left
        with pytest.raises(PlannerError, match="closed"):
            engines.create_for_user(UserExecutionContext.create("alice"))

    run(scenario())


# ---------------------------------------------------------------------- isolation


def test_two_hundred_users_running_at_once_each_see_only_their_own_events(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    users = [f"user-{i:03d}" for i in range(200)]
    streams = {user: events_of(bus, user) for user in users}

    async def everyone() -> list[tuple[Plan, UserExecutionContext]]:
        return await asyncio.gather(
            *(one_run(engines, user, "echo", planner="echo", context={"n": 2}) for user in users)
        )

    results = run(everyone())
    for user, (plan, context) in zip(users, results, strict=True):
        seen = streams[user]
        assert {event.user_id for event in seen} == {user}
        assert {event.run_id for event in seen} == {context.run_id}
        assert types(seen) == [AGENT_STARTED, AGENT_THINKING, AGENT_COMPLETED]
        assert [event.sequence for event in seen] == [1, 2, 3]
        assert seen[-1].payload["result"]["plan_id"] == plan.plan_id
    metrics = engines.metrics()
    assert metrics["engines_created"] == metrics["engines_cleaned"] == 200
    assert metrics["runs_succeeded"] == 200
    assert metrics["events_sent"] == 600
    assert metrics["events_failed"] == 0


def test_a_subscriber_that_raises_never_aborts_the_run(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())

    def broken(event: RuntimeEvent) -> None:
        raise ConnectionError("socket closed")

    bus.subscribe("alice", broken)
    seen = events_of(bus, "alice")
    plan, _ = run(one_run(engines, "alice", "echo", planner="echo"))
    assert plan.planner.name == "echo"
    assert types(seen) == [AGENT_STARTED, AGENT_THINKING, AGENT_COMPLETED]
    assert bus.delivery_failures == 3


def test_a_bus_that_cannot_publish_never_aborts_the_run_and_is_counted(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    bus.close()  # every publish now raises
    plan, _ = run(one_run(engines, "alice", "echo", planner="echo"))
    assert plan.planner.name == "echo"
    metrics = engines.metrics()
    assert (metrics["events_sent"], metrics["events_failed"]) == (0, 3)
    assert metrics["runs_succeeded"] == 1


# ---------------------------------------------------------------------- metrics


def test_duration_windows_are_bounded_and_exact() -> None:
    window = DurationWindow(4)
    assert window.summary()["p50_ms"] == 0.0
    for value in range(1, 11):
        window.add(float(value))
    summary = window.summary()
    assert summary == {
        "count": 10,
        "window": 4,
        "mean_ms": 8.5,
        "p50_ms": 8.0,
        "p95_ms": 10.0,
        "max_ms": 10.0,
    }
    with pytest.raises(ValueError, match="at least 1"):
        DurationWindow(0)


def test_metrics_count_every_engine_and_run(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())

    async def scenario() -> None:
        for _ in range(3):
            await one_run(engines, "alice", "echo", planner="echo")
        with pytest.raises(PlanExecutionError):
            await one_run(engines, "alice", "explode", planner="failing")

    run(scenario())
    live = engines.create_for_user(UserExecutionContext.create("bob"))
    metrics = engines.metrics()
    assert metrics["engines_created"] == 5
    assert metrics["engines_cleaned"] == 4
    assert metrics["engines_active"] == 1
    assert metrics["peak_concurrent"] == 1
    assert (metrics["runs_started"], metrics["runs_succeeded"], metrics["runs_failed"]) == (
        4,
        3,
        1,
    )
    assert metrics["events_sent"] == 12
    assert metrics["creation"]["count"] == 5
    assert metrics["cleanup"]["count"] == 4
    assert metrics["run"]["count"] == 4
    for key in ("mean_ms", "p50_ms", "p95_ms", "max_ms"):
        assert metrics["run"][key] >= 0.0
    assert metrics["run"]["p50_ms"] <= metrics["run"]["p95_ms"] <= metrics["run"]["max_ms"]
    engines.cleanup(live)


def test_a_named_run_is_refused_while_the_planners_breaker_is_open(tmp_path: Path) -> None:
    from planforge.factory._breaker import CircuitOpenError

    plugins = tmp_path / "breaker_plugins"
    plugins.mkdir()
    (plugins / "breaker_echo.py").write_text(
        "from planforge.contract import Planner, PlanStep\n\n\n"
        "class BreakerEcho(Planner):\n"
        "    name = 'breaker_echo'\n"
        "    reliability_score = 0.9\n\n"
        "    def plan(self, objective, context):\n"
        "        return self.new_plan(objective, [PlanStep(id='1', action='echo')])\n"
    )
    factory = PlannerFactory(
        load_settings(plugin_dirs=(plugins,)),
        search_path=[],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )
    factory.discover()
    factory._current().records["breaker_echo"].breaker.force_open()
    bus = InProcessEventBus()
    engines = ExecutionEngineFactory(factory, bus=bus)
    seen: list[str] = []
    bus.subscribe("carol", lambda event: seen.append(event.type))

    async def scenario() -> None:
        async with engines.user_execution_scope(UserExecutionContext.create("carol")) as engine:
            with pytest.raises(CircuitOpenError):
                await engine.run("anything", planner="breaker_echo")

    asyncio.run(scenario())
    assert seen[-1] == "agent_error"
    factory.close()


# ---------------------------------------------------------------------- input errors


def test_a_bad_context_is_refused_before_the_planner_is_admitted(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    from planforge.errors import InvalidContext
    from planforge.portfolio.context import validate_context

    factory.register_context_kind("portfolio", validate_context)
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "erin")
    bad = json.loads(json.dumps(PORTFOLIO))
    bad["positions"][0]["current_price"] = -5
    for planner in ("holistic", None):  # named, and chosen by objective
        with pytest.raises(InvalidContext) as caught:
            run(one_run(engines, "erin", "Rebalance my portfolio", planner=planner, context=bad))
        assert caught.value.field == "positions[0].current_price"
    assert types(seen) == [AGENT_ERROR, AGENT_ERROR]  # nothing started
    assert {(e.payload["input_error"], e.payload["field"]) for e in seen} == {
        (True, "positions[0].current_price")
    }
    holistic = factory.describe_planner("holistic")
    assert holistic["stats"]["invocations"] == 0
    assert holistic["breaker"]["calls_in_window"] == 0
    # the reserved planner_config key (a bucket's or --config's choice) is not the portfolio's
    chosen = {**PORTFOLIO, "planner_config": "conservative"}
    plan, _ = run(one_run(engines, "erin", "Rebalance my portfolio", context=chosen))
    assert plan.planner.name == "holistic"
    assert engines.metrics()["engines_active"] == 0


def test_an_admitted_context_is_not_validated_again(
    factory: PlannerFactory, bus: InProcessEventBus
) -> None:
    """The service admits a context before it answers 202; the run must not pay for the
    validation a second time, while a plain run validates once."""
    from planforge.portfolio.context import validate_context

    calls: list[int] = []

    def counted(context: Any) -> None:
        calls.append(1)
        validate_context(context)

    factory.register_context_kind("portfolio", counted)
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    objective = "Rebalance my portfolio"
    kind = engines.admit_context(objective, PORTFOLIO, planner="holistic")
    assert (kind, len(calls)) == ("portfolio", 1)

    async def admitted_run() -> str:
        async with engines.user_execution_scope(UserExecutionContext.create("erin")) as engine:
            plan = await engine.run(
                objective, PORTFOLIO, planner="holistic", context_kind=kind, admitted=True
            )
            return plan.planner.name

    assert run(admitted_run()) == "holistic"
    assert len(calls) == 1  # not again
    run(one_run(engines, "erin", objective, planner="holistic", context=PORTFOLIO))
    assert len(calls) == 2  # a run that was not admitted validates its context once


def test_a_bucket_run_is_validated_as_the_holistic_planners_kind(
    factory: PlannerFactory, bus: InProcessEventBus, tmp_path: Path
) -> None:
    from planforge.errors import InvalidContext
    from planforge.portfolio.context import validate_context

    factory.register_context_kind("portfolio", validate_context)
    bad = {**PORTFOLIO, "cash": float("inf")}
    with ConfigStore(home=tmp_path / "store") as store:
        version = store.create_new_version("shallow", "Shallow", BUCKET_TOML).config
        store.assign_config_to_bucket("beta-users", version.id)
        engines = ExecutionEngineFactory(factory, bus=bus, store=store, settings=settings())
        with pytest.raises(InvalidContext, match="cash: must be a finite number"):
            run(one_run(engines, "carol", "Rebalance", bucket="beta-users", context=bad))
        plan, _ = run(
            one_run(engines, "carol", "Rebalance", bucket="beta-users", context=PORTFOLIO)
        )
        run(engines.aclose())
    assert plan.planner.name == "holistic"
    assert factory.planner_stats("holistic")["holistic"]["failures"] == 0


def test_a_context_the_planner_rejects_itself_never_counts_against_it(tmp_path: Path) -> None:
    plugins = tmp_path / "picky_plugins"
    plugins.mkdir()
    (plugins / "rt_picky.py").write_text(
        "from planforge.contract import Planner\n"
        "from planforge.errors import InvalidContext\n\n\n"
        "class Picky(Planner):\n"
        "    name = 'picky'\n"
        "    reliability_score = 0.9\n\n"
        "    def plan(self, objective, context):\n"
        "        if context.get('depth', 0) > 3:\n"
        "            raise InvalidContext('depth', 'must be at most 3')\n"
        "        return self.new_plan(objective, [])\n"
    )
    factory = PlannerFactory(
        load_settings(plugin_dirs=(plugins,)),
        search_path=[],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )
    from planforge.errors import InvalidContext

    bus = InProcessEventBus()
    engines = ExecutionEngineFactory(factory, bus=bus, settings=settings())
    seen = events_of(bus, "frank")
    try:
        before = factory.describe_planner("picky")
        for _ in range(3 * factory.settings.breaker_min_calls):
            with pytest.raises(InvalidContext, match="depth"):
                run(one_run(engines, "frank", "anything", planner="picky", context={"depth": 9}))
        after = factory.describe_planner("picky")
        plan, _ = run(one_run(engines, "frank", "anything", context={"depth": 1}))
    finally:
        bus.close()
        factory.close()
        sys.modules.pop("rt_picky", None)
    assert after["breaker"]["state"] == "closed"
    assert after["breaker"]["calls_in_window"] == 0
    assert after["reliability"] == before["reliability"]
    assert (after["stats"]["invocations"], after["stats"]["failures"]) == (0, 0)
    errors = [e.payload for e in seen if e.type == AGENT_ERROR]
    assert len(errors) == 3 * factory.settings.breaker_min_calls
    assert all(e["input_error"] and e["field"] == "depth" for e in errors)
    assert plan.planner.name == "picky"
