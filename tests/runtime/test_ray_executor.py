"""The `ray` executor on a real local Ray cluster, with run events through a real Redis.

The module starts one Ray head of its own (`ray start --head` on loopback, in a short temp
dir of its own) and stops it, by its process group, however the tests end. Each planner is a
plugin file; runs go through `ExecutionEngineFactory` as the service sends them. A planner
that leaves a trace writes to a file whose path is in its source: Ray's workers were started
before any test could set an environment variable.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks._ray_local import local_ray_cluster

from planforge.errors import PlanExecutionError, PlannerError
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
    load_runtime_settings,
)
from planforge.runtime._executor import build_executor
from planforge.runtime._ray_executor import RayExecutor
from planforge.runtime.errors import RunTimeout, WorkerLost
from planforge.settings import load_settings

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install '.[ray]'")
REDIS_URL = os.environ.get("PLANFORGE_TEST_REDIS_URL")

HEADER = """
import os, time
from pathlib import Path
from planforge.contract import Planner, PlanStep

"""


def _planner(name: str, body: str) -> str:
    lines = textwrap.dedent(body).strip().splitlines()
    return HEADER + "\n".join(
        [
            f"class P_{name}(Planner):",
            f"    name = {name!r}",
            '    version = "1.0.0"',
            f"    keywords = ({name!r},)",
            '    tier = "stable"',
            "    production_ready = True",
            "    reliability_score = 0.8",
            "    accepts_run = True",
            "",
            "    def plan(self, objective, context, *, run=None):",
            *(f"        {line}" for line in lines),
            "",
        ]
    )


def _plugins(traces: Path) -> dict[str, str]:
    exits, sleeps = str(traces / "exit.txt"), str(traces / "sleep.txt")
    return {
        "re_exit": _planner(
            "h_exit",
            f"""
            with open({exits!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            os._exit(7)
            """,
        ),
        "re_sleep": _planner(
            "h_sleep",
            f"""
            Path({sleeps!r}).write_text(str(os.getpid()))
            time.sleep(60)
            return None
            """,
        ),
        "re_raise": _planner("h_raise", 'raise ValueError("no plan for that objective")'),
        "re_ok": _planner(
            "ok",
            """
            for index, module in enumerate(("ok.first", "ok.second", "ok.third")):
                run.module_started(module)
                run.progress(index + 1, 3, f"{module} done")
                run.module_completed(module, 1.0)
            step = PlanStep(id="1", action="pid", params={"pid": os.getpid()})
            return self.new_plan(objective, [step])
            """,
        ),
        "re_steady": _planner(
            "steady",
            """
            words = objective.split()
            steps = [
                PlanStep(id=str(i), action=word, params={"weight": context.get("w", 1) * i})
                for i, word in enumerate(words, start=1)
            ]
            return self.new_plan(objective, steps, score=len(words) * 1.5)
            """,
        ),
    }


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray head on loopback for this module; its whole process group is killed after."""
    if not REDIS_URL:
        pytest.skip("PLANFORGE_TEST_REDIS_URL is not set: run events travel through Redis")
    with local_ray_cluster(num_cpus=2) as address:  # a failed start raises with Ray's log
        yield address


@pytest.fixture(scope="module")
def setup(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ray-executor")
    plugins, traces = root / "plugins", root / "traces"
    plugins.mkdir()
    traces.mkdir()
    for module, source in _plugins(traces).items():
        (plugins / f"{module}.py").write_text(source)
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=30.0)
    factory = PlannerFactory(
        settings,
        search_path=[str(root / "empty-site")],
        cache_dir=root / "cache",
        state_dir=root / "state",
    )
    runtime = load_runtime_settings(
        max_runs_per_user=50, ray_address=ray_address, redis_url=REDIS_URL
    )
    bus = InProcessEventBus(buffer_size=1000)
    engines = ExecutionEngineFactory(factory, bus=bus, settings=runtime, executor="ray")
    inline = ExecutionEngineFactory(
        factory, bus=InProcessEventBus(buffer_size=100), settings=runtime, executor="inline"
    )
    engines.executor.start()
    try:
        yield {
            "engines": engines,
            "inline": inline,
            "traces": traces,
            "bus": bus,
            "factory": factory,
            "runtime": runtime,
        }
    finally:
        asyncio.run(engines.aclose())
        asyncio.run(inline.aclose())
        bus.close()
        factory.close()


async def _run(
    engines: ExecutionEngineFactory,
    user: str,
    planner: str,
    timeout_s: float = 60.0,
    objective: str = "plan it",
    context: dict[str, Any] | None = None,
) -> Any:
    async with engines.user_execution_scope(UserExecutionContext.create(user)) as engine:
        return await engine.run(objective, context or {}, planner=planner, timeout_s=timeout_s)


def _outcome(engines: ExecutionEngineFactory, user: str, planner: str, timeout_s: float) -> Any:
    try:
        return asyncio.run(_run(engines, user, planner, timeout_s))
    except Exception as exc:  # the test looks at which error it was
        return exc


def _gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_run_plans_in_a_ray_worker_and_matches_the_inline_plan(setup: dict[str, Any]) -> None:
    plan = asyncio.run(_run(setup["engines"], "alice", "ok"))
    assert plan.steps[0].params["pid"] != os.getpid()
    objective, context = "buy hold sell rebalance", {"w": 3}
    remote = asyncio.run(_run(setup["engines"], "alice", "steady", 60.0, objective, context))
    local = asyncio.run(_run(setup["inline"], "alice", "steady", 60.0, objective, context))
    assert [step.action for step in remote.steps] == ["buy", "hold", "sell", "rebalance"]
    assert remote.steps == local.steps
    assert remote.score == local.score == 6.0
    assert remote.plan_id == local.plan_id
    described = setup["engines"].executor.describe()
    assert described["executor"] == "ray"
    assert described["connected"] is True
    assert described["submitted"] >= 2
    assert "127.0.0.1" not in repr(described)


def test_events_of_a_ray_worker_reach_the_users_stream_in_order(setup: dict[str, Any]) -> None:
    seen: list[Any] = []
    unsubscribe = setup["bus"].subscribe("bob", seen.append)
    try:
        asyncio.run(_run(setup["engines"], "bob", "ok"))
    finally:
        unsubscribe()
    types = [event.type for event in seen]
    assert types[0] == AGENT_STARTED
    assert types[-1] == AGENT_COMPLETED
    assert AGENT_ERROR not in types
    tools = [(e.type, e.payload["tool_name"]) for e in seen if e.type.startswith("tool_")]
    expected = []
    for module in ("ok.first", "ok.second", "ok.third"):
        expected += [(TOOL_EXECUTING, module), (TOOL_COMPLETED, module)]
    assert tools == expected
    thoughts = [e.payload["reasoning"] for e in seen if e.type == AGENT_THINKING]
    assert [text for text in thoughts if text.startswith("ok.")] == [
        "ok.first done",
        "ok.second done",
        "ok.third done",
    ]
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(sequences)


def test_a_worker_that_dies_twice_fails_its_run_and_the_next_run_works(
    setup: dict[str, Any],
) -> None:
    engines = setup["engines"]
    lost = engines.executor.describe()["lost"]
    error = _outcome(engines, "mallory", "h_exit", 60.0)
    assert isinstance(error, WorkerLost), error
    assert "WorkerCrashedError" in error.message
    attempts = (setup["traces"] / "exit.txt").read_text().split()
    assert len(attempts) == 2  # retried once, in another worker process
    assert len(set(attempts)) == 2
    assert engines.executor.describe()["lost"] == lost + 1
    plan = asyncio.run(_run(engines, "alice", "ok"))
    assert plan.steps[0].params["pid"] != os.getpid()


def test_a_timeout_kills_the_ray_worker_not_only_the_wait(setup: dict[str, Any]) -> None:
    error = _outcome(setup["engines"], "mallory", "h_sleep", 3.0)
    assert isinstance(error, RunTimeout), error
    pid = int((setup["traces"] / "sleep.txt").read_text())
    assert pid != os.getpid()
    assert _gone(pid), f"the worker {pid} of the timed-out run is still alive"
    assert asyncio.run(_run(setup["engines"], "alice", "ok")).steps


def test_a_planner_error_comes_back_as_plan_execution_error(setup: dict[str, Any]) -> None:
    lost = setup["engines"].executor.describe()["lost"]
    error = _outcome(setup["engines"], "mallory", "h_raise", 60.0)
    assert isinstance(error, PlanExecutionError), error
    assert "ValueError: no plan for that objective" in error.message
    assert setup["engines"].executor.describe()["lost"] == lost  # the worker lives on


def test_closing_an_executor_leaves_a_connection_it_did_not_make(
    setup: dict[str, Any],
) -> None:
    second = RayExecutor(setup["factory"].recipe(), setup["runtime"])
    second.start()  # the first executor connected this process already
    assert second.describe()["connected"] is True
    second.close()
    assert ray.is_initialized()
    assert asyncio.run(_run(setup["engines"], "alice", "ok")).steps


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"ray_address": "", "redis_url": "redis://127.0.0.1:6379/0"}, "PLANFORGE_RAY_ADDRESS"),
        ({"ray_address": "local", "redis_url": "redis://127.0.0.1:6379/0"}, "RAY_ADDRESS"),
        ({"ray_address": "127.0.0.1:6380", "redis_url": ""}, "PLANFORGE_REDIS_URL"),
    ],
)
def test_the_ray_executor_needs_an_address_and_redis(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    factory = PlannerFactory(
        load_settings(), search_path=[str(tmp_path)], cache_dir=tmp_path / "cache"
    )
    try:
        with pytest.raises(PlannerError, match=variable):
            build_executor("ray", factory, load_runtime_settings(**overrides))
    finally:
        factory.close()
