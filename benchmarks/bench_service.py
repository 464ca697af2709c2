"""The service end to end, on a real `planforge serve` process on a loopback port.

(a) Plans per second through `POST /plans` (then `GET /plans/{id}` until the run ends) with
50 concurrent clients, one user each: the holistic planner on the sample portfolio, and a
tiny planner, for each executor (`inline`, `process`, and `ray` on a local 2-CPU head when
Ray and PLANFORGE_REDIS_URL are there), with `/livez` probed every 20 ms meanwhile (its p99
says whether the server stays responsive while every worker is busy). Comparison in the same
run: `PlannerFactory.run_plan` called directly in this process, one plan after another; the
ratio service / direct is what the service costs (or, above 1, what its concurrency gains).
(b) WebSocket delivery latency with 1,000 connected users, each starting one tiny run:
latency = receive time here - the event's `ts` (stamped by the server's emitter; same
machine, same clock). The client's own event loop shares the 2 cores with the server, so the
figure is an upper bound of the server's part. The issue asks for the p99; it sets no target.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from benchmarks._ray_local import local_ray_cluster
from planforge.configstore import ConfigStore
from planforge.factory import PlannerFactory
from planforge.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "portfolio.json"
CLIENTS = 50
HOLISTIC_RUNS = 200
TINY_RUNS = 1000
LIVEZ_EVERY_S = 0.02
DIRECT_HOLISTIC_RUNS = 100
DIRECT_TINY_RUNS = 2000
WS_USERS = 1000
WS_CONNECT_CONCURRENCY = 100
PHASE_LIMIT_S = 180.0
POLL_S = 0.005
SERVE = (sys.executable, "-m", "planforge.cli", "serve")
TERMINAL = frozenset({"agent_completed", "agent_error"})

TINY_PLUGIN = '''
from planforge.contract import Planner, PlanStep


class Tiny(Planner):
    """One step, no work: what the service costs around a plan."""

    name = "tiny"
    version = "1.0.0"
    capabilities = ("general",)
    keywords = ("tiny",)
    tier = "stable"
    production_ready = True
    reliability_score = 0.9
    description = "one step, no work"

    def plan(self, objective, context):
        return self.new_plan(objective, [PlanStep(id="1", action="noop")], score=1.0)
'''


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def _server(root: Path, database: str, plugin_dir: Path, extra: dict[str, str]) -> Iterator[str]:
    """A `planforge serve` process; always terminated (then killed) on the way out."""
    port = _free_port()
    env = {
        **os.environ,
        "PLANFORGE_DATABASE_URL": database,
        "FACTORY_PLUGIN_DIRS": str(plugin_dir),
        "FACTORY_CACHE_DIR": str(root / "server-cache"),
        "FACTORY_STATE_DIR": str(root / "server-state"),
        "FACTORY_SANDBOX_TIMEOUT_S": "30",
    }
    env.pop("PLANFORGE_REDIS_URL", None)
    env.update(extra)
    log_path = root / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*SERVE, "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60.0
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/livez", timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server never answered: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            yield base
        except BaseException:
            print(f"server log tail: {log_path.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------------- (a) plans per second


async def _run_once(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> str:
    """Start a run and poll until it ends; its final status."""
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.post("/plans", json=body, headers=headers)
    if response.status_code != 202:
        return f"http {response.status_code}"
    run_id = response.json()["run_id"]
    while True:
        record = await client.get(f"/plans/{run_id}", headers=headers)
        status: str = record.json()["status"]
        if status not in ("queued", "running"):
            return status
        await asyncio.sleep(POLL_S)


async def _throughput(
    base: str, tokens: Sequence[str], body: dict[str, Any], total: int
) -> dict[str, Any]:
    """`total` runs by len(tokens) concurrent clients (one user each), serially per client."""
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        await _run_once(client, tokens[0], body)  # warm: planner loaded, modules imported
        remaining = total
        outcomes: dict[str, int] = {}
        durations: list[float] = []

        async def one_client(token: str) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    status = await _run_once(client, token, body)
                except httpx.TransportError as exc:  # counted, not fatal: see the outcomes
                    status = f"transport error: {type(exc).__name__}"
                durations.append(time.perf_counter() - started)
                outcomes[status] = outcomes.get(status, 0) + 1

        livez: list[float] = []
        with _livez_probe(base, livez):
            started = time.perf_counter()
            async with asyncio.timeout(PHASE_LIMIT_S):
                await asyncio.gather(*(one_client(token) for token in tokens))
            elapsed = time.perf_counter() - started
    completed = outcomes.get("completed", 0)
    return {
        "runs": total,
        "outcomes": dict(sorted(outcomes.items())),
        "seconds": round(elapsed, 3),
        "plans_per_s": round(completed / elapsed, 2),
        "run_ms_p50": round(statistics.median(durations) * 1e3, 2),
        "run_ms_p99": round(_percentile(durations, 0.99) * 1e3, 2),
        "livez_ms_p99": round(_percentile(livez, 0.99) * 1e3, 2) if livez else None,
    }


#: `/livez` timed from a process of its own, so the figure is the server's answer time, not
#: the delay of this client's busy event loop; it stops when its stop file appears.
LIVEZ_PROBE = """
import json, sys, time, urllib.request
from pathlib import Path
base, stop, every = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
latencies = []
while not stop.exists():
    started = time.perf_counter()
    urllib.request.urlopen(base + "/livez", timeout=30).read()
    latencies.append(time.perf_counter() - started)
    time.sleep(every)
print(json.dumps(latencies))
"""


@contextmanager
def _livez_probe(base: str, latencies: list[float]) -> Iterator[None]:
    """Probe `/livez` from another process while the block runs; its latencies, after."""
    with tempfile.TemporaryDirectory(prefix="livez-") as tmp:
        stop = Path(tmp) / "stop"
        probe = subprocess.Popen(
            [sys.executable, "-c", LIVEZ_PROBE, base, str(stop), str(LIVEZ_EVERY_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            yield
        finally:
            stop.touch()
            output, _ = probe.communicate(timeout=60)
            latencies.extend(json.loads(output or "[]"))


def _direct(factory: PlannerFactory, body: dict[str, Any], total: int) -> dict[str, Any]:
    """The same plans through `PlannerFactory.run_plan` in this process, one at a time."""
    factory.run_plan(body["objective"], body["context"], planner=body["planner"])  # warm
    started = time.perf_counter()
    for _ in range(total):
        factory.run_plan(body["objective"], body["context"], planner=body["planner"])
    elapsed = time.perf_counter() - started
    return {"runs": total, "seconds": round(elapsed, 3), "plans_per_s": round(total / elapsed, 2)}


# ---------------------------------------------------------------------- (b) WebSocket latency


async def _ws_latency(base: str, tokens: Sequence[str]) -> dict[str, Any]:
    """Every user connected first; then each starts one tiny run; latency of every event."""
    ws_base = base.replace("http://", "ws://")
    latencies: list[float] = []
    received = 0
    foreign = 0
    gate = asyncio.Semaphore(WS_CONNECT_CONCURRENCY)
    connected = asyncio.Barrier(len(tokens) + 1)

    async def listen(token: str) -> None:
        nonlocal received, foreign
        async with gate:
            socket_ = await websockets.connect(
                f"{ws_base}/ws/events?token={token}", open_timeout=60, ping_interval=None
            )
        try:
            await connected.wait()
            run_id: str | None = None
            while True:
                message = await socket_.recv()
                now = time.time()
                event = json.loads(message)
                latencies.append(now - float(event["ts"]))
                received += 1
                if run_id is None:
                    run_id = event["run_id"]
                elif event["run_id"] != run_id:
                    foreign += 1
                if event["type"] in TERMINAL:
                    return
        finally:
            await socket_.close()

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with (
        httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client,
        asyncio.timeout(PHASE_LIMIT_S),
    ):
        listeners = [asyncio.create_task(listen(token)) for token in tokens]
        connect_started = time.perf_counter()
        await connected.wait()
        connect_s = time.perf_counter() - connect_started
        starters = asyncio.Semaphore(CLIENTS)
        rejected = 0

        async def start(token: str) -> None:
            nonlocal rejected
            async with starters:
                response = await client.post(
                    "/plans",
                    json={"objective": "tiny", "planner": "tiny", "context": {}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if response.status_code != 202:
                    rejected += 1

        started = time.perf_counter()
        await asyncio.gather(*(start(token) for token in tokens))
        await asyncio.gather(*listeners)
        elapsed = time.perf_counter() - started
    return {
        "users": len(tokens),
        "connect_all_s": round(connect_s, 3),
        "events": received,
        "foreign_events": foreign,
        "rejected_runs": rejected,
        "seconds": round(elapsed, 3),
        "events_per_s": round(received / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 2),
        "max_ms": round(max(latencies) * 1e3, 2),
    }


# ---------------------------------------------------------------------- main


def _executors(stack: ExitStack, wanted: set[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Each executor to measure and the server environment that picks it."""
    for name in ("inline", "process"):
        if name in wanted:
            yield name, {"PLANFORGE_EXECUTOR": name}
    if "ray" not in wanted:
        return
    redis_url = os.environ.get("PLANFORGE_REDIS_URL") or os.environ.get("PLANFORGE_TEST_REDIS_URL")
    if importlib.util.find_spec("ray") is None or not redis_url:
        print("ray left out: install planforge[ray] and set PLANFORGE_REDIS_URL", file=sys.stderr)
        return
    address = os.environ.get("PLANFORGE_RAY_ADDRESS") or stack.enter_context(
        local_ray_cluster(num_cpus=2)
    )
    yield (
        "ray",
        {
            "PLANFORGE_EXECUTOR": "ray",
            "PLANFORGE_RAY_ADDRESS": address,
            "PLANFORGE_REDIS_URL": redis_url,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="inline,process,ray", help="comma list")
    wanted = set(parser.parse_args().executors.split(","))
    portfolio = json.loads(EXAMPLE.read_text())
    bodies = {
        "holistic": {
            "objective": "Rebalance my portfolio",
            "planner": "holistic",
            "context": portfolio,
        },
        "tiny": {"objective": "tiny", "planner": "tiny", "context": {}},
    }
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        root = Path(tmp)
        plugin_dir = root / "plugins"
        plugin_dir.mkdir()
        (plugin_dir / "bench_tiny.py").write_text(textwrap.dedent(TINY_PLUGIN))
        database = f"sqlite:///{root / 'store.db'}"
        with ConfigStore(database) as store:
            tokens = [
                store.create_user(f"bench{index:04d}", "operator")[1] for index in range(WS_USERS)
            ]

        direct: dict[str, dict[str, Any]] = {}
        settings = load_settings(plugin_dirs=(plugin_dir,), sandbox_timeout_s=30.0)
        with PlannerFactory(
            settings, cache_dir=root / "direct-cache", state_dir=root / "direct-state"
        ) as factory:
            direct["holistic"] = _direct(factory, bodies["holistic"], DIRECT_HOLISTIC_RUNS)
            direct["tiny"] = _direct(factory, bodies["tiny"], DIRECT_TINY_RUNS)

        service: dict[str, dict[str, dict[str, Any]]] = {}
        clients = tokens[:CLIENTS]
        latency: dict[str, Any] = {}
        for executor, extra in _executors(stack := ExitStack(), wanted):
            with _server(root, database, plugin_dir, extra) as base:
                service[executor] = {
                    name: asyncio.run(_throughput(base, clients, body, total))
                    for name, body, total in (
                        ("holistic", bodies["holistic"], HOLISTIC_RUNS),
                        ("tiny", bodies["tiny"], TINY_RUNS),
                    )
                }
                if executor == "process":  # the service's default
                    # these users' earlier runs are finished, so each stream starts with the
                    # new run's events only
                    latency = asyncio.run(_ws_latency(base, tokens))
        stack.close()

    plans = {
        executor: {
            name: {
                "service": figures[name],
                "direct": direct[name],
                "ratio_service_to_direct": round(
                    figures[name]["plans_per_s"] / direct[name]["plans_per_s"], 3
                ),
            }
            for name in ("holistic", "tiny")
        }
        for executor, figures in service.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "service",
                "cores": os.cpu_count(),
                "clients": CLIENTS,
                "plans_per_s": plans,
                "ws_latency": latency,
                "target": {"plans_per_s": None, "ws_p99_ms": None},
                "target_note": "issue 5 asks for these figures; it sets no target",
                "target_met": None,
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
