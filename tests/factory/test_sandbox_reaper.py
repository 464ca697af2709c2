"""Processes a sandboxed check leaves behind: seen, counted, killed, reaped, and reported.

Every plugin here starts real processes and writes their pids to a file, so the test can look
them up in /proc after the check. The main process never imports any plugin module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.errors import PlannerQuarantined, SandboxImportError
from planforge.factory import PlannerFactory
from planforge.factory._sandbox import ImportTarget, Sandbox
from planforge.factory._sandbox_reaper import _children_by_scan, children, descendants
from planforge.settings import load_settings

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux features"
)

PLANNER = """
from planforge.contract import Planner

class {cls}(Planner):
    name = {name!r}
    version = "1.0.0"
    capabilities = ("general",)
    reliability_score = 0.9
{body}
"""

# Each prelude starts processes and writes their pids to PIDS, a path filled in per test.
FORKS_FIFTY = """
import os, pathlib, time
pids = []
for _ in range(50):
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    pids.append(pid)
pathlib.Path(PIDS).write_text(" ".join(map(str, pids)))
"""

SETSID_DOUBLE_FORK = """
import os, pathlib, time
read_end, write_end = os.pipe()
middle = os.fork()
if middle == 0:
    os.setsid()  # leave the check's process group and session
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(60)
        os._exit(0)
    os.write(write_end, str(grandchild).encode())
    os._exit(0)
os.waitpid(middle, 0)
pathlib.Path(PIDS).write_text(os.read(read_end, 64).decode())
"""

STARTS_A_COMMAND = """
import pathlib, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
pathlib.Path(PIDS).write_text(str(child.pid))
"""

WAITS_FOR_ITS_CHILDREN = """
import os, pathlib, subprocess, sys
done = subprocess.run([sys.executable, "-c", "print('helper ran')"], capture_output=True)
assert done.stdout.strip() == b"helper ran"
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
pathlib.Path(PIDS).write_text(str(pid))
"""

SELF_TEST_STARTS_A_COMMAND = """
    def self_test(self):
        import pathlib, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path(PIDS).write_text(str(child.pid))
"""


def write_planner(
    directory: Path, name: str, pids: Path, *, prelude: str = "", body: str = ""
) -> Path:
    source = f"PIDS = {str(pids)!r}\n" + textwrap.dedent(prelude)
    source += PLANNER.format(cls=name.title().replace("_", ""), name=name, body=body)
    path = directory / f"{name}.py"
    path.write_text(source)
    return path


def recorded_pids(path: Path) -> list[int]:
    pids = [int(part) for part in path.read_text().split()]
    assert pids, "the plugin recorded no pid"
    return pids


def gone(pid: int) -> bool:
    """No process holds the pid any more: killed and reaped (a zombie would still be listed)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(timeout_s=30.0) as shared:
        yield shared


@pytest.mark.parametrize(
    ("prelude", "count"),
    [(FORKS_FIFTY, 50), (SETSID_DOUBLE_FORK, 1), (STARTS_A_COMMAND, 1)],
    ids=["forks-fifty", "setsid-double-fork", "command-not-waited-for"],
)
def test_processes_left_running_fail_the_check_and_are_all_killed_and_reaped(
    sandbox: Sandbox, tmp_path: Path, prelude: str, count: int
) -> None:
    pids_file = tmp_path / "pids"
    plugin = write_planner(tmp_path, "leaky", pids_file, prelude=prelude)
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(ImportTarget("leaky", "Leaky", path=str(plugin)))
    plural = "process" if count == 1 else "processes"
    assert f"left {count} {plural} behind" in caught.value.reason
    assert caught.value.context["leftovers"] == count
    started = recorded_pids(pids_file)
    assert len(started) == count
    assert [pid for pid in started if not gone(pid)] == []
    assert "leaky" not in sys.modules


def test_processes_started_by_self_test_are_caught_too(sandbox: Sandbox, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    plugin = write_planner(tmp_path, "leaky_test", pids_file, body=SELF_TEST_STARTS_A_COMMAND)
    with pytest.raises(SandboxImportError, match="left 1 process behind"):
        sandbox.check(ImportTarget("leaky_test", "LeakyTest", path=str(plugin)))
    assert [pid for pid in recorded_pids(pids_file) if not gone(pid)] == []


def test_a_module_that_waits_for_the_processes_it_starts_passes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    plugin = write_planner(tmp_path, "tidy", pids_file, prelude=WAITS_FOR_ITS_CHILDREN)
    report = sandbox.check(ImportTarget("tidy", "Tidy", path=str(plugin)))
    assert report.ok
    assert report.leftovers == 0
    assert report.metadata["name"] == "tidy"


def test_the_spare_child_survives_a_sweep_and_serves_the_next_check(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.start()
    helper = sandbox.helper_pid
    assert helper is not None
    assert sandbox.subreaper is True
    plugin = write_planner(tmp_path, "leaky", tmp_path / "pids", prelude=FORKS_FIFTY)
    with pytest.raises(SandboxImportError, match="left 50 processes behind"):
        sandbox.check(ImportTarget("leaky", "Leaky", path=str(plugin)))
    # What the helper has left: its spare (and at most a cleanly answered child still exiting).
    waiting = children(helper)
    assert 1 <= len(waiting) <= 2
    good = write_planner(tmp_path, "tidy", tmp_path / "tidy-pids", prelude=WAITS_FOR_ITS_CHILDREN)
    report = sandbox.check(ImportTarget("tidy", "Tidy", path=str(good)))
    assert report.ok
    assert report.child_pid in waiting  # the spare forked before the sweep did this check
    assert sandbox.helper_pid == helper


def make_factory(plugins: Path, tmp_path: Path) -> PlannerFactory:
    return PlannerFactory(
        load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=30.0),
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )


@pytest.mark.parametrize(
    ("prelude", "count"),
    [(FORKS_FIFTY, 50), (SETSID_DOUBLE_FORK, 1)],
    ids=["forks-fifty", "setsid-double-fork"],
)
def test_a_planner_that_leaves_processes_behind_is_quarantined_saying_so(
    tmp_path: Path, prelude: str, count: int
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    pids_file = tmp_path / "pids"
    write_planner(plugins, "leaky", pids_file, prelude=prelude)
    write_planner(plugins, "tidy", tmp_path / "tidy-pids", prelude=WAITS_FOR_ITS_CHILDREN)
    with make_factory(plugins, tmp_path) as factory:
        with pytest.raises(SandboxImportError, match=f"left {count} process"):
            factory.get_planner("leaky")
        assert [pid for pid in recorded_pids(pids_file) if not gone(pid)] == []
        (entry,) = factory.list_quarantined()
        assert entry["planner_name"] == "leaky"
        assert f"left {count} process" in entry["reason"]
        described = factory.describe_planner("leaky")
        assert described["status"] == "quarantined"
        assert f"left {count} process" in described["status_reason"]
        with pytest.raises(PlannerQuarantined, match="behind"):
            factory.get_planner("leaky")
        assert factory.get_planner("tidy").name == "tidy"  # the helper serves the next check
    assert "leaky" not in sys.modules


def test_children_reads_the_same_tree_as_a_full_proc_scan(tmp_path: Path) -> None:
    script = "import subprocess, sys, time\n" + (
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        " for _ in range(2)]\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"
        kids = children(parent.pid)
        assert len(kids) == 2
        assert sorted(_children_by_scan(parent.pid)) == kids
        assert set(kids) | {parent.pid} <= set(descendants([os.getpid()]))
    finally:
        for pid in children(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
    assert children(parent.pid) == []
