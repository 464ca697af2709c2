"""Per-user execution engines: users isolated from each other, metrics, and input errors."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from planforge.configstore import ConfigStore
from planforge.contract import Plan
from planforge.errors import PlanExecutionError
from planforge.factory import PlannerFactory
from planforge.runtime import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    AGENT_STARTED,
    AGENT_THINKING,
    ExecutionEngineFactory,
    InProcessEventBus,
    RuntimeEvent,
    UserExecutionContext,
)
from planforge.runtime._metrics import DurationWindow
from planforge.settings import load_settings
from tests.runtime._engine_support import (
    BUCKET_TOML,
    PORTFOLIO,
    events_of,
    one_run,
    run,
    settings,
    types,
)

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
