"""The `process` executor on real worker processes: hostile planners end only their own runs.

Each hostile planner is a plugin file; the runs go through `ExecutionEngineFactory` as the
service sends them. A worker that exits, segfaults, runs out of memory or sleeps past its
timeout fails its run with the cause and is replaced, while the runs of other users complete.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.errors import PlanExecutionError
from planforge.factory import PlannerFactory
from planforge.runtime import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    TOOL_COMPLETED,
    ExecutionEngineFactory,
    InProcessEventBus,
    UserExecutionContext,
    load_runtime_settings,
)
from planforge.runtime._process_pool import ProcessExecutor
from planforge.runtime.errors import RunCancelled, RunTimeout, WorkerLost
from planforge.settings import load_settings

HEADER = """
import os, time
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


PLUGINS = {
    "pe_exit": _planner("h_exit", "os._exit(7)"),
    "pe_segv": _planner("h_segv", "import ctypes\nctypes.string_at(0)"),
    "pe_hog": _planner("h_hog", "hog = [bytearray(64 << 20) for _ in range(64)]\nreturn None"),
    "pe_sleep": _planner("h_sleep", "time.sleep(60)\nreturn None"),
    "pe_ok": _planner(
        "ok",
        """
        if run is not None:
            run.module_started("ok.step")
            run.module_completed("ok.step", 1.0)
        step = PlanStep(id="1", action="pid", params={"pid": os.getpid()})
        return self.new_plan(objective, [step])
        """,
    ),
}
MARKER = """
import os
from pathlib import Path
from planforge.contract import Planner

with open(os.environ["PE_MARKER"], "a") as handle:
    handle.write(f"{os.getpid()}\\n")


class Marked(Planner):
    name = "marked"
    version = "1.0.0"
    keywords = ("marked",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.8

    def plan(self, objective, context):
        return self.new_plan(objective, [])
"""


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExecutionEngineFactory]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for module, source in {**PLUGINS, "pe_marker": MARKER}.items():
        (plugins / f"{module}.py").write_text(source)
    monkeypatch.setenv("PE_MARKER", str(tmp_path / "marker.txt"))
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=30.0)
    factory = PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )
    runtime = load_runtime_settings(max_runs_per_user=50)
    executor = ProcessExecutor(factory.recipe(), workers=2, memory_mb=1024, max_runs=100)
    bus = InProcessEventBus(buffer_size=1000)
    made = ExecutionEngineFactory(factory, bus=bus, settings=runtime, executor=executor)
    executor.start()
    yield made
    asyncio.run(made.aclose())
    bus.close()
    factory.close()


async def _run(
    engines: ExecutionEngineFactory, user: str, planner: str, timeout_s: float = 60.0
) -> Any:
    async with engines.user_execution_scope(UserExecutionContext.create(user)) as engine:
        return await engine.run("plan it", {}, planner=planner, timeout_s=timeout_s)


def _outcome(engines: ExecutionEngineFactory, user: str, planner: str, timeout_s: float) -> Any:
    try:
        return asyncio.run(_run(engines, user, planner, timeout_s))
    except Exception as exc:  # the test looks at which error it was
        return exc


@pytest.mark.parametrize(
    ("planner", "cause"),
    [("h_exit", "exit code 7"), ("h_segv", "killed by SIGSEGV")],
)
def test_a_worker_that_dies_fails_only_its_run_with_the_cause(
    engines: ExecutionEngineFactory, planner: str, cause: str
) -> None:
    error = _outcome(engines, "mallory", planner, 60.0)
    assert isinstance(error, WorkerLost)
    assert cause in error.message
    executor = engines.executor
    assert isinstance(executor, ProcessExecutor)
    assert executor.lost == 1
    # the pool is whole again, and the next run plans in a worker, not in this process
    plan = asyncio.run(_run(engines, "alice", "ok"))
    assert plan.steps[0].params["pid"] != os.getpid()
    assert len(executor.worker_pids()) == 2


def test_a_planner_past_the_memory_limit_fails_with_memory_error(
    engines: ExecutionEngineFactory,
) -> None:
    error = _outcome(engines, "mallory", "h_hog", 60.0)
    assert isinstance(error, PlanExecutionError | WorkerLost)
    assert "MemoryError" in error.message or "killed" in error.message
    assert asyncio.run(_run(engines, "alice", "ok")).steps


def test_a_timeout_kills_the_worker_not_only_the_wait(engines: ExecutionEngineFactory) -> None:
    executor = engines.executor
    assert isinstance(executor, ProcessExecutor)
    before = set(executor.worker_pids())
    error = _outcome(engines, "mallory", "h_sleep", 1.0)
    assert isinstance(error, RunTimeout)
    after = set(executor.worker_pids())
    assert len(after) == 2
    assert before != after
    for pid in before - after:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_hostile_runs_beside_twenty_runs_of_other_users(engines: ExecutionEngineFactory) -> None:
    async def main() -> list[Any]:
        hostile = [_run(engines, "mallory", name, 5.0) for name in ("h_exit", "h_segv")]
        calm = [_run(engines, f"user{index}", "ok") for index in range(20)]
        return await asyncio.gather(*hostile, *calm, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(result, WorkerLost) for result in results[:2])
    assert all(not isinstance(result, BaseException) for result in results[2:]), results[2:]
    assert {result.steps[0].params["pid"] for result in results[2:]} - {os.getpid()}


def test_a_module_runs_its_import_in_workers_never_in_the_server(
    engines: ExecutionEngineFactory, tmp_path: Path
) -> None:
    asyncio.run(_run(engines, "alice", "marked"))
    writers = {int(line) for line in (tmp_path / "marker.txt").read_text().split()}
    assert writers
    assert os.getpid() not in writers


def test_events_of_a_worker_reach_the_users_stream(engines: ExecutionEngineFactory) -> None:
    bus = engines.bus
    assert isinstance(bus, InProcessEventBus)
    seen: list[Any] = []
    bus.subscribe("alice", seen.append)
    asyncio.run(_run(engines, "alice", "ok"))
    types = [event.type for event in seen]
    assert TOOL_COMPLETED in types
    assert types[-1] == AGENT_COMPLETED
    assert AGENT_ERROR not in types


def test_cancelling_a_run_stops_its_worker_and_ends_it_cancelled(
    engines: ExecutionEngineFactory,
) -> None:
    executor = engines.executor
    assert isinstance(executor, ProcessExecutor)
    before = set(executor.worker_pids())

    async def main() -> BaseException | None:
        context = UserExecutionContext.create("mallory")
        async with engines.user_execution_scope(context) as engine:
            task = asyncio.create_task(engine.run("plan it", {}, planner="h_sleep", timeout_s=60))
            while not engine.details:  # the run has reached its worker
                await asyncio.sleep(0.01)
            engine.cancel("the owner changed their mind")
            try:
                await task
            except RunCancelled as exc:
                return exc
        return None

    error = asyncio.run(main())
    assert isinstance(error, RunCancelled)
    assert "changed their mind" in error.message
    assert set(executor.worker_pids()) != before
