"""Hostile plugin planners against a real `planforge serve`: the server outlives every one.

The service plans in worker processes, so a planner that exits the process, segfaults,
allocates past the worker's memory limit or sleeps past its timeout fails only its own run,
with the cause, while `/livez` answers throughout and twenty runs of other users complete.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.server._served import Served, http, served_planforge

ROOT = Path(__file__).resolve().parents[2]

HOSTILE = """
import os, time
from planforge.contract import Planner, PlanStep


class Hostile(Planner):
    name = "{name}"
    version = "1.0.0"
    keywords = ("{name}",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.8

    def plan(self, objective, context):
        {body}
        step = PlanStep(id="1", action="pid", params={{"pid": os.getpid()}})
        return self.new_plan(objective, [step])
"""

PLUGINS = {
    "h_planexit": HOSTILE.format(name="h_planexit", body="os._exit(7)"),
    "h_segv": HOSTILE.format(name="h_segv", body="import ctypes; ctypes.string_at(0)"),
    "h_hog": HOSTILE.format(name="h_hog", body="hog = [bytearray(64 << 20) for _ in range(64)]"),
    "h_sleep": HOSTILE.format(name="h_sleep", body="time.sleep(60)"),
    "h_calm": HOSTILE.format(name="h_calm", body="pass"),
}
MARKED_PLANNER = """
import os
from planforge.contract import Planner

with open(os.environ["PF_PLANNER_MARKER"], "a") as handle:
    handle.write(f"{os.getpid()}\\n")


class Marked(Planner):
    name = "h_marked"
    version = "1.0.0"
    keywords = ("marked",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.8

    def plan(self, objective, context):
        return self.new_plan(objective, [])
"""
USERS = {"mallory": "operator", **{f"user{index}": "operator" for index in range(20)}}


def _wait(served: Served, user: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60.0
    while True:
        status, record = http("GET", f"{served.base}/plans/{run_id}", served.tokens[user])
        assert status == 200, record
        if record["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def _plan(served: Served, user: str, planner: str, timeout_s: float = 30.0) -> dict[str, Any]:
    body = {"objective": "plan", "planner": planner, "timeout_s": timeout_s}
    status, started = http("POST", f"{served.base}/plans", served.tokens[user], body)
    assert status == 202, started
    return _wait(served, user, started["run_id"])


def test_hostile_planners_fail_their_runs_and_the_server_answers_throughout(
    tmp_path: Path,
) -> None:
    env = {"PLANFORGE_WORKERS": "3", "PLANFORGE_WORKER_MEMORY_MB": "1024"}
    with served_planforge(tmp_path, users=USERS, plugins=PLUGINS, env=env) as served:
        live: list[int] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                live.append(http("GET", f"{served.base}/livez")[0])
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            with ThreadPoolExecutor(max_workers=24) as pool:
                timeouts = {"h_planexit": 30.0, "h_segv": 30.0, "h_hog": 30.0, "h_sleep": 3.0}
                hostile = {
                    name: pool.submit(_plan, served, "mallory", name, timeout)
                    for name, timeout in timeouts.items()
                }
                calm = [pool.submit(_plan, served, f"user{i}", "h_calm") for i in range(20)]
                results = {name: future.result() for name, future in hostile.items()}
                calm_results = [future.result() for future in calm]
        finally:
            stop.set()
            prober.join()
        assert results["h_planexit"]["error"]["error"] == "WorkerLost"
        assert "exit code 7" in results["h_planexit"]["error"]["message"]
        assert "SIGSEGV" in results["h_segv"]["error"]["message"]
        hog = results["h_hog"]["error"]["message"]
        assert "MemoryError" in hog or "killed" in hog
        assert results["h_sleep"]["error"]["error"] == "RunTimeout"
        failed = [(r["status"], r["error"]) for r in calm_results if r["status"] != "completed"]
        assert not failed
        assert live
        assert set(live) == {200}


MARKED_MODULE = """
import os
from planforge.holistic.modules import OpportunityCalculator


class PidMarker(OpportunityCalculator):
    name = "pid_marker"
    description = "writes the pid of the process that runs it"

    def calculate(self, context, params):
        with open(os.environ["PF_MODULE_MARKER"], "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        return []
"""


def test_an_ab_comparison_runs_module_plugins_in_a_worker(tmp_path: Path) -> None:
    """An A/B comparison plans twice with holistic engines, whose modules may be plugins: the
    service sends it to a worker, so a module's work never runs in the server's process."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "pid_marker_module.py").write_text(MARKED_MODULE)
    marker = tmp_path / "marker.txt"
    env = {"PLANFORGE_MODULE_DIRS": str(modules), "PF_MODULE_MARKER": str(marker)}
    toml = "[opportunity_calculators.pid_marker]\nenabled = true\n"
    portfolio = json.loads((ROOT / "examples" / "portfolio.json").read_text())
    with served_planforge(tmp_path, users={"alice": "operator"}, env=env) as served:
        token = served.tokens["alice"]
        body = {"objective": "compare", "config_a": toml, "config_b": "default"}
        status, compared = http(
            "POST", f"{served.base}/abtest", token, body | {"context": portfolio}
        )
        assert status == 200, compared
        assert compared["winner"] in ("a", "b")
        status, report = http("POST", f"{served.base}/configs/dry-run", token, {"toml": toml})
        assert status == 200, report
        assert "opportunity_calculators.pid_marker" in report["modules_loaded"]
    writers = {int(line) for line in marker.read_text().split()}
    assert writers
    assert served.pid not in writers


def test_a_planner_module_is_imported_by_workers_never_by_the_server(tmp_path: Path) -> None:
    """Its import-time code (here: writing its pid) runs in the sandbox check's helper and in
    the worker that plans, never in the server's process."""
    marker = tmp_path / "planner-marker.txt"
    env = {"PF_PLANNER_MARKER": str(marker)}
    plugins = {"h_marked": MARKED_PLANNER}
    with served_planforge(
        tmp_path, users={"alice": "operator"}, plugins=plugins, env=env
    ) as served:
        record = _plan(served, "alice", "h_marked")
        assert record["status"] == "completed", record
        assert record["worker"].startswith("process:")
    writers = {int(line) for line in marker.read_text().split()}
    assert writers
    assert served.pid not in writers
