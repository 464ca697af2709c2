"""Per-user execution engines: limits per user, cleanup, and the reaper of idle and old engines."""

from __future__ import annotations

import asyncio
import sys

import pytest

from planforge.errors import PlannerError
from planforge.factory import PlannerFactory
from planforge.runtime import (
    ExecutionEngine,
    ExecutionEngineFactory,
    InProcessEventBus,
    UserExecutionContext,
)
from planforge.runtime.errors import (
    EngineClosed,
    RunLimitExceeded,
    UserCapacityExceeded,
)
from tests.runtime._engine_support import (
    FakeClock,
    one_run,
    run,
    settings,
)

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
