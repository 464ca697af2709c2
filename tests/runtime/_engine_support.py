"""What the runtime engine tests share: plugin planners written to a directory, the factory
and bus fixtures (registered for the package by conftest.py), and small helpers."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from planforge.contract import Plan
from planforge.factory import PlannerFactory
from planforge.portfolio.planner import HolisticPortfolioPlanner
from planforge.runtime import (
    ExecutionEngineFactory,
    InProcessEventBus,
    RuntimeEvent,
    RuntimeSettings,
    UserExecutionContext,
    load_runtime_settings,
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
