"""Discovery as a user feels it: the public calls in a new process, against stevedore.

What is timed is exactly what an application does on start:

    factory = PlannerFactory()
    factory.discover(); names = factory.list_planners(); factory.describe_planner(names[0])

each time in a new process (its imports done before the clock starts, on both sides). The
figures with a target time the three calls; `*_with_construction_ms` adds `PlannerFactory()`
itself (reading the settings from the environment). Warm =
the discovery cache is present; cold = no cache (the files themselves are in the page cache).
stevedore's `ExtensionManager` reads the same group in the same run and the capabilities of
every plugin it finds (it must import each plugin to read them): with an empty entry-point
cache against our cold calls, and with its cache warm against our warm calls.

Layout (a fake site-packages): 800 installed distributions, 100 of which register 5 planners
each (one module per distribution, 500 planners); about half of the others carry unrelated
entry points. A second layout has 500 distributions of one planner each. The modules are
compiled to bytecode when the layout is made, as pip does when it installs a distribution, so
a cold discovery reads their structure from Python's bytecode cache; a second cold figure
removes `__pycache__` before each call (files never installed nor imported: every one parsed).
A third figure edits one plugin module and times the same calls (the cache is stale; only that
file is read again).

Cold calls and stevedore's runs alternate in rounds, so both sides meet the same slow spells of
a shared machine. Children may write bytecode, as on a normal install, and planforge is
compiled before the rounds (an environment setting `PYTHONDONTWRITEBYTECODE` would otherwise
make every child compile from source). With `--baseline SRC` (another checkout's `src`), the
same calls of that code are timed in the same rounds and each figure gets a line comparing
the two.

Output: one JSON line per figure, with its value, its target, what it is compared with, and
the ratio. Run: python -m benchmarks.bench_discovery [--baseline ../main/src]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 3
COLD_PER_ROUND = 5
WARM_PROCESSES = 9
CHANGED_PROCESSES = 5
TARGETS = {"warm_ms": 2.0, "cold_ms": 60.0, "cold_speedup_vs_stevedore": 10.0}

PLUGIN_HEADER = '''"""Planners of distribution {dist}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planforge.contract import Plan, Planner
'''

PLUGIN_CLASS = '''

class Planner{index}(Planner):
    """A planner of {dist}."""

    name = "{dist}-p{index}"
    version = "1.{index}.0"
    capabilities = ("rebalance", "cap{index}")
    tags = (
        "bench",
        "{dist}",
    )
    tier = "stable"
    production_ready = True
    reliability_score = 0.8
    description = "Benchmark planner {index} of {dist}"
    keywords = ("portfolio", "plan")
    stateful = False

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        steps = [step for step in context.get("steps", ())]
        return self.new_plan(
            objective,
            steps,
            score=0.5,
        )
'''

# The public calls, in a new process. The site comes first on sys.path, as an installed
# package directory would; settings come from the environment, as for any application.
FACTORY_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import planforge.contract
from planforge import PlannerFactory
started = time.perf_counter()
factory = PlannerFactory()
built = time.perf_counter()
specs = factory.discover()
names = factory.list_planners()
described = factory.describe_planner(names[0])
done = time.perf_counter()
capabilities = {spec.name: tuple(spec.capabilities) for spec in specs}
assert tuple(described["capabilities"]) == capabilities[names[0]]
print(json.dumps({"ms": (done - built) * 1000, "with_construction_ms": (done - started) * 1000,
                  "planners": len(specs), "capabilities": len(capabilities)}))
"""

STEVEDORE_CHILD = """
import json, sys, time
import planforge.contract
from stevedore import ExtensionManager  # imports excluded, as on our side
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
manager = ExtensionManager(namespace="planforge.planners", invoke_on_load=False)
capabilities = {ext.name: tuple(ext.plugin.capabilities) for ext in manager.extensions}
elapsed = (time.perf_counter() - started) * 1000
print(json.dumps({"ms": elapsed, "planners": len(manager.extensions),
                  "capabilities": len(capabilities)}))
"""


def build_site(root: Path, dists: int, with_planners: int, per_dist: int) -> Path:
    site = root / "site"
    site.mkdir(parents=True)
    for index in range(dists):
        dist = f"bench_dist_{index:04d}"
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        if index < with_planners:
            module = f"bench_plugin_{index:04d}"
            body = PLUGIN_HEADER.format(dist=dist) + "".join(
                PLUGIN_CLASS.format(dist=dist.replace("_", "-"), index=k) for k in range(per_dist)
            )
            (site / f"{module}.py").write_text(body)
            lines = "\n".join(f"{dist}-p{k} = {module}:Planner{k}" for k in range(per_dist))
            (info / "entry_points.txt").write_text(
                f"[console_scripts]\n{dist} = {module}:main\n\n[planforge.planners]\n{lines}\n"
            )
        elif index % 2 == 0:
            (info / "entry_points.txt").write_text(
                f"[console_scripts]\n{dist} = {dist}.cli:main\n\n"
                f"[other.group]\nthing = {dist}.things:Thing\n"
            )
    # pip compiles what it installs (its `--no-compile` is the exception): so does the layout
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], check=True)
    return site


class Side:
    """One code base's public calls: where its source is, and where its cache and state go."""

    def __init__(self, label: str, root: Path, source: str | None) -> None:
        self.label = label
        self.cache = root / f"cache-{label}"
        self.state = root / f"state-{label}"
        self.source = source

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "FACTORY_CACHE_DIR": str(self.cache),
            "FACTORY_STATE_DIR": str(self.state),
            "FACTORY_PLUGIN_DIRS": "",
            "FACTORY_FORCE_REDISCOVER": "false",
        }
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.source, env.get("PYTHONPATH")]))
        return env

    def calls(self, site: Path) -> dict[str, float]:
        return _child(FACTORY_CHILD, str(site), env=self.env())

    def cold(self, site: Path) -> dict[str, float]:
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        return self.calls(site)


def _child(code: str, *args: str, env: dict[str, str]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env
    ).stdout
    data: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return data


def _stevedore(site: Path, xdg: Path) -> tuple[float, float, int]:
    """stevedore with an empty entry-point cache, then again with that cache warm."""
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg)}
    first = _child(STEVEDORE_CHILD, str(site), env=env)
    second = _child(STEVEDORE_CHILD, str(site), env=env)
    return first["ms"], second["ms"], int(first["planners"])


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def scenario(layout: str, dists: int, with_planners: int, per_dist: int, sides: list[Side]) -> None:
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
        root = Path(tmp)
        site = build_site(root, dists, with_planners, per_dist)
        os.sync()  # no writeback of the new files competes with the timed calls
        sides = [Side(side.label, root, side.source) for side in sides]
        cold: dict[str, list[float]] = {side.label: [] for side in sides}
        stevedore_cold: list[float] = []
        stevedore_warm: list[float] = []
        counts: dict[str, int] = {}
        for round_ in range(ROUNDS):
            for _ in range(COLD_PER_ROUND):
                for side in sides:
                    run = side.cold(site)
                    cold[side.label].append(run["ms"])
                    counts[side.label] = int(run["planners"])
            first, second, counts["stevedore"] = _stevedore(site, root / f"xdg-{round_}")
            stevedore_cold.append(first)
            stevedore_warm.append(second)
        warm: dict[str, list[float]] = {side.label: [] for side in sides}
        warm_built: dict[str, list[float]] = {side.label: [] for side in sides}
        for _ in range(WARM_PROCESSES):
            for side in sides:
                run = side.calls(site)
                warm[side.label].append(run["ms"])
                warm_built[side.label].append(run["with_construction_ms"])
        uncompiled: dict[str, list[float]] = {side.label: [] for side in sides}
        for _ in range(COLD_PER_ROUND):
            for side in sides:  # plugin files never compiled nor imported: all parsed
                shutil.rmtree(site / "__pycache__", ignore_errors=True)
                uncompiled[side.label].append(side.cold(site)["ms"])
        changed: dict[str, list[float]] = {side.label: [] for side in sides}
        module = site / "bench_plugin_0000.py"
        for run_ in range(CHANGED_PROCESSES):
            for side in sides:
                with module.open("a") as handle:
                    handle.write(f"# edit {side.label} {run_}\n")
                changed[side.label].append(side.calls(site)["ms"])
        for side in sides:
            against = {"layout": layout, "code": side.label}
            _against_stevedore(
                "warm_with_construction_ms",
                warm_built[side.label],
                stevedore_warm,
                "stevedore_cached_ms",
                **against,
            )
            _against_stevedore(
                "cold_without_bytecode_public_calls_ms",
                uncompiled[side.label],
                stevedore_cold,
                "stevedore_empty_cache_ms",
                **against,
            )
        _report(layout, sides, cold, warm, changed, stevedore_cold, stevedore_warm, counts)


def _against_stevedore(
    figure: str, ours: list[float], theirs: list[float], comparison: str, **fields: str
) -> None:
    value, other = _median(ours), _median(theirs)
    _line(
        figure=figure,
        value=value,
        comparison=comparison,
        comparison_value=other,
        ratio=round(other / value, 1),
        **fields,
    )


def _report(
    layout: str,
    sides: list[Side],
    cold: dict[str, list[float]],
    warm: dict[str, list[float]],
    changed: dict[str, list[float]],
    stevedore_cold: list[float],
    stevedore_warm: list[float],
    counts: dict[str, int],
) -> None:
    st_cold, st_warm = _median(stevedore_cold), _median(stevedore_warm)
    for side in sides:
        label = side.label
        common = {"layout": layout, "code": label, "planners": counts[label]}
        warm_ms, cold_ms = _median(warm[label]), _median(cold[label])
        _line(
            figure="warm_public_calls_ms",
            value=warm_ms,
            target=f"<= {TARGETS['warm_ms']}",
            met=warm_ms <= TARGETS["warm_ms"],
            comparison="stevedore_cached_ms",
            comparison_value=st_warm,
            ratio=round(st_warm / warm_ms, 1),
            **common,
        )
        speedup = round(st_cold / cold_ms, 1)
        _line(
            figure="cold_public_calls_ms",
            value=cold_ms,
            best=round(min(cold[label]), 3),
            target=f"<= {TARGETS['cold_ms']} and >= {TARGETS['cold_speedup_vs_stevedore']}x",
            met=cold_ms <= TARGETS["cold_ms"] and speedup >= TARGETS["cold_speedup_vs_stevedore"],
            comparison="stevedore_empty_cache_ms",
            comparison_value=st_cold,
            ratio=speedup,
            **common,
        )
        _line(
            figure="one_module_changed_public_calls_ms",
            value=_median(changed[label]),
            **common,
        )
    _line(figure="stevedore_plugins", value=counts["stevedore"], layout=layout, code="stevedore")
    if len(sides) == 2:
        this, base = sides
        for figure, data in (("warm", warm), ("cold", cold), ("one_module_changed", changed)):
            value, baseline = _median(data[this.label]), _median(data[base.label])
            _line(
                figure=f"{figure}_public_calls_ms",
                layout=layout,
                code=this.label,
                value=value,
                comparison=f"{base.label} ({base.source})",
                comparison_value=baseline,
                ratio=round(baseline / value, 1),
            )


def _line(**fields: object) -> None:
    print(json.dumps({"benchmark": "discovery", **fields}), flush=True)


def _with_bytecode(sides: list[Side]) -> None:
    """Both sides run as on a normal install: bytecode may be written (an environment that
    forbids it makes every child compile what it imports, stevedore's plugins included), and
    the planforge code of each side is compiled before anything is timed."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for side in sides:
        if side.source:
            package = Path(side.source) / "planforge"
        else:
            spec = importlib.util.find_spec("planforge")
            assert spec is not None
            assert spec.origin is not None
            package = Path(spec.origin).parent
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout's src directory, timed alongside")
    args = parser.parse_args()
    sides = [Side("this", Path(), None)]
    if args.baseline:
        sides.append(Side("baseline", Path(), str(Path(args.baseline).resolve())))
    _with_bytecode(sides)
    scenario("800 dists, 100 x 5 planners", 800, 100, 5, sides)
    scenario("500 dists, 500 x 1 planner", 500, 500, 1, sides)


if __name__ == "__main__":
    main()
