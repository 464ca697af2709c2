"""The sandboxed import check, against hostile plugins imported in real child processes.

Every plugin module here is written to a temporary directory with a name starting with
`pf_sbx_`; the main process must never import any of them.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.errors import SandboxImportError, SandboxTimeout
from planforge.factory._sandbox import ImportTarget, Sandbox, validate_module_name

PLUGINS: dict[str, str] = {
    "pf_sbx_good": """
        from planforge.contract import Planner

        print("hello from the good plugin")

        class GoodPlanner(Planner):
            name = "good"
            version = "1.2.3"
            capabilities = ("rebalance", "explain")
            tags = frozenset({"b", "a"})
            tier = "stable"
            reliability_score = 0.9

            def self_test(self):
                assert self.name == "good"

        class Nested:
            class Inner(Planner):
                name = "inner"
    """,
    "pf_sbx_plain": """
        from planforge.contract import Planner

        class PlainPlanner(Planner):
            name = "plain"
    """,
    "pf_sbx_sleep": "import time\ntime.sleep(60)\n",
    "pf_sbx_spin": "while True:\n    pass\n",
    "pf_sbx_sys_exit": "import sys\nsys.exit(3)\n",
    "pf_sbx_os_exit": "import os\nos._exit(7)\n",
    "pf_sbx_segfault": "import ctypes\nctypes.string_at(0)\n",
    "pf_sbx_raises": "raise ValueError('boom at import')\n",
    "pf_sbx_syntax": "def broken(:\n    pass\n",
    "pf_sbx_memory": "hog = bytearray(2 * 1024 * 1024 * 1024)\n",
    "pf_sbx_flood": "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 65536)\n",
    "pf_sbx_self_test_fails": """
        from planforge.contract import Planner

        class Fragile(Planner):
            name = "fragile"

            def self_test(self):
                raise RuntimeError("no GPU here")
    """,
    "pf_sbx_self_test_hangs": """
        import time
        from planforge.contract import Planner

        class Slow(Planner):
            name = "slow"

            def self_test(self):
                time.sleep(60)
    """,
    "pf_sbx_bad_init": """
        from planforge.contract import Planner

        class NeedsArgs(Planner):
            name = "needs_args"

            def __init__(self, required):
                self.required = required
    """,
    "pf_sbx_bad_metadata": """
        from planforge.contract import Planner

        class Odd(Planner):
            name = "odd"
            description = b"bytes are not JSON"
    """,
    "pf_sbx_kills_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "pf_sbx_slow_ok": "import time\ntime.sleep(0.2)\nVALUE = 1\n",
}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugins")
    for name, source in PLUGINS.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(timeout_s=1.0, max_memory_mb=256, max_output_bytes=65536) as shared:
        yield shared


@pytest.fixture(autouse=True, scope="module")
def _never_imported_in_the_main_process() -> Iterator[None]:
    yield
    assert sorted(name for name in sys.modules if name.startswith("pf_sbx_")) == []


def target(plugin_dir: Path, module: str, qualname: str | None = None) -> ImportTarget:
    return ImportTarget(module, qualname, search_path=(str(plugin_dir),))


def assert_gone(pid: int | None) -> None:
    """The child was killed and reaped: no process, not even a zombie, holds the pid."""
    assert isinstance(pid, int)
    assert pid != os.getpid()
    assert not Path(f"/proc/{pid}").exists()


# ---------------------------------------------------------------------------- good plugins


def test_a_good_plugin_reports_metadata_and_a_passed_self_test(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    report = sandbox.check(target(plugin_dir, "pf_sbx_good", "GoodPlanner"))
    assert report.ok
    assert report.self_test == "passed"
    assert report.metadata["name"] == "good"
    assert report.metadata["version"] == "1.2.3"
    assert report.metadata["capabilities"] == ["rebalance", "explain"]
    assert report.metadata["tags"] == ["a", "b"]
    assert report.metadata["reliability_score"] == 0.9
    assert report.metadata["stateful"] is False
    assert report.exit_code == 0
    assert report.signal is None
    assert report.import_ms > 0
    assert report.total_ms >= report.import_ms
    assert report.output_tail == "hello from the good plugin\n"
    assert report.output_bytes == len(report.output_tail)
    assert "pf_sbx_good" not in sys.modules


def test_a_nested_class_resolves_by_qualname(sandbox: Sandbox, plugin_dir: Path) -> None:
    report = sandbox.check(target(plugin_dir, "pf_sbx_good", "Nested.Inner"))
    assert report.metadata["name"] == "inner"
    assert report.self_test == "absent"


def test_self_test_is_absent_when_not_overridden_and_skipped_when_not_asked(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    plain = target(plugin_dir, "pf_sbx_plain", "PlainPlanner")
    assert sandbox.check(plain).self_test == "absent"
    assert sandbox.check(plain, self_test=False).self_test == "skipped"
    fragile = target(plugin_dir, "pf_sbx_self_test_fails", "Fragile")
    assert sandbox.check(fragile, instantiate=False).self_test == "skipped"
    assert sandbox.check(target(plugin_dir, "pf_sbx_good")).metadata == {}


def test_a_directory_plugin_is_loaded_from_its_file(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "some plugins" / "my-planner.py"
    source.parent.mkdir()
    source.write_text(textwrap.dedent(PLUGINS["pf_sbx_plain"]))
    report = sandbox.check(ImportTarget("pf_sbx_dir_plain", "PlainPlanner", path=str(source)))
    assert report.metadata["name"] == "plain"


def test_a_package_directory_plugin_with_relative_imports(sandbox: Sandbox, tmp_path: Path) -> None:
    package = tmp_path / "pf_sbx_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .impl import PackagedPlanner\n")
    (package / "impl.py").write_text(
        "from planforge.contract import Planner\n\n"
        "class PackagedPlanner(Planner):\n    name = 'packaged'\n"
    )
    report = sandbox.check(ImportTarget("pf_sbx_pkg", "PackagedPlanner", path=str(package)))
    assert report.metadata["name"] == "packaged"


def test_a_slow_but_timely_import_passes(sandbox: Sandbox, plugin_dir: Path) -> None:
    report = sandbox.check(target(plugin_dir, "pf_sbx_slow_ok"))
    assert report.ok
    assert report.import_ms >= 200


# ---------------------------------------------------------------------------- hostile plugins


@pytest.mark.parametrize("module", ["pf_sbx_sleep", "pf_sbx_spin"])
def test_a_hanging_import_times_out_and_the_child_is_reaped(
    sandbox: Sandbox, plugin_dir: Path, module: str
) -> None:
    with pytest.raises(SandboxTimeout) as caught:
        sandbox.check(target(plugin_dir, module))
    assert caught.value.module == module
    assert caught.value.timeout_s == 1.0
    assert_gone(caught.value.context["child_pid"])


def test_a_hanging_self_test_times_out(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxTimeout) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_self_test_hangs", "Slow"))
    assert_gone(caught.value.context["child_pid"])
    report = sandbox.check(target(plugin_dir, "pf_sbx_self_test_hangs", "Slow"), self_test=False)
    assert report.metadata["name"] == "slow"


def test_sys_exit_at_import_is_reported_with_its_code(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_sys_exit"))
    assert "sys.exit(3)" in caught.value.reason
    assert caught.value.exit_code == 3


def test_os_exit_at_import_is_reported_with_its_exit_code(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_os_exit"))
    assert caught.value.exit_code == 7
    assert "code 7" in caught.value.reason
    assert_gone(caught.value.context["child_pid"])


def test_a_segfault_is_reported_with_the_signal(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_segfault"))
    assert caught.value.signal == signal.SIGSEGV
    assert "SIGSEGV" in caught.value.reason
    assert "pf_sbx_segfault" in caught.value.traceback_tail  # faulthandler's dump
    assert_gone(caught.value.context["child_pid"])


def test_an_exception_at_import_is_reported_with_type_message_and_traceback(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_raises"))
    assert "ValueError: boom at import" in caught.value.reason
    assert "pf_sbx_raises.py" in caught.value.traceback_tail
    assert caught.value.context["error_type"] == "ValueError"


def test_a_syntax_error_names_the_file_and_line(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_syntax"))
    assert "SyntaxError" in caught.value.reason
    assert "pf_sbx_syntax.py, line 1" in caught.value.reason


def test_a_missing_module_is_an_import_error(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError, match="ModuleNotFoundError"):
        sandbox.check(target(plugin_dir, "pf_sbx_no_such_module"))


def test_a_missing_class_is_named(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_good", "MissingPlanner"))
    assert "'MissingPlanner' not found in module 'pf_sbx_good'" in caught.value.reason


def test_a_non_class_target_is_rejected(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError, match="not a class"):
        sandbox.check(target(plugin_dir, "pf_sbx_slow_ok", "VALUE"))


def test_allocating_past_the_memory_limit_names_the_setting(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_memory"))
    assert "exceeded FACTORY_SANDBOX_MAX_MEMORY_MB=256" in caught.value.reason


def test_printing_megabytes_is_cut_off_and_rejected(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_flood"))
    assert "printed more than 65536 bytes at import" in caught.value.reason
    assert 0 < len(caught.value.output_tail) <= 4096
    assert set(caught.value.output_tail) == {"x"}
    assert_gone(caught.value.context["child_pid"])


def test_a_failing_self_test_is_reported(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_self_test_fails", "Fragile"))
    assert caught.value.reason == "self_test failed: RuntimeError: no GPU here"
    report = sandbox.probe(target(plugin_dir, "pf_sbx_self_test_fails", "Fragile"))
    assert not report.ok
    assert report.self_test == "failed"
    assert report.metadata["name"] == "fragile"


def test_a_class_that_cannot_be_instantiated_is_reported(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    with pytest.raises(SandboxImportError, match="instantiating NeedsArgs failed: TypeError"):
        sandbox.check(target(plugin_dir, "pf_sbx_bad_init", "NeedsArgs"))
    report = sandbox.check(target(plugin_dir, "pf_sbx_bad_init", "NeedsArgs"), instantiate=False)
    assert report.metadata["name"] == "needs_args"


def test_non_json_metadata_is_reported(sandbox: Sandbox, plugin_dir: Path) -> None:
    with pytest.raises(SandboxImportError) as caught:
        sandbox.check(target(plugin_dir, "pf_sbx_bad_metadata", "Odd"))
    assert "'description' is not JSON-able" in caught.value.reason


def test_the_sandbox_carries_on_after_every_failure(sandbox: Sandbox, plugin_dir: Path) -> None:
    for module in ("pf_sbx_segfault", "pf_sbx_os_exit", "pf_sbx_raises"):
        with pytest.raises(SandboxImportError):
            sandbox.check(target(plugin_dir, module))
    assert sandbox.check(target(plugin_dir, "pf_sbx_good", "GoodPlanner")).ok


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "module",
    ["", "a..b", "../etc", "a/b", "a\\b", "a;b", "a&b", "a|b", "$HOME", "a`b`", "a b", ".a", "a."],
)
def test_bad_module_names_are_rejected_before_anything_runs(module: str) -> None:
    sandbox = Sandbox()
    try:
        with pytest.raises(SandboxImportError, match="not a dotted Python identifier"):
            sandbox.check(ImportTarget(module))
        assert sandbox.helper_pid is None
    finally:
        sandbox.close()
    with pytest.raises(SandboxImportError):
        validate_module_name(module)


def test_bad_qualname_and_path_are_rejected() -> None:
    with Sandbox() as sandbox:
        with pytest.raises(SandboxImportError, match="class name"):
            sandbox.check(ImportTarget("os", "path;rm"))
        with pytest.raises(SandboxImportError, match="path"):
            sandbox.check(ImportTarget("os", path="/tmp/\x00x"))
        assert sandbox.helper_pid is None


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Sandbox(timeout_s=0)
    with pytest.raises(ValueError, match="max_memory_mb"):
        Sandbox(max_memory_mb=1)


# ---------------------------------------------------------------------------- the helper


def test_a_helper_killed_from_outside_is_replaced(plugin_dir: Path) -> None:
    with Sandbox(timeout_s=1.0) as sandbox:
        sandbox.start()
        first = sandbox.helper_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        report = sandbox.check(target(plugin_dir, "pf_sbx_good", "GoodPlanner"))
        assert report.ok
        assert sandbox.helper_pid not in (None, first)
        assert sandbox.helper_starts == 2


def test_a_plugin_that_kills_the_helper_fails_and_the_next_check_works(
    plugin_dir: Path,
) -> None:
    with Sandbox(timeout_s=1.0) as sandbox:
        with pytest.raises(SandboxImportError, match="sandbox helper died"):
            sandbox.check(target(plugin_dir, "pf_sbx_kills_parent"))
        assert sandbox.check(target(plugin_dir, "pf_sbx_plain", "PlainPlanner")).ok


def test_close_stops_the_helper_and_refuses_more_checks(plugin_dir: Path) -> None:
    sandbox = Sandbox(timeout_s=1.0)
    sandbox.start()
    pid = sandbox.helper_pid
    sandbox.close()
    sandbox.close()
    assert_gone(pid)
    with pytest.raises(RuntimeError, match="closed"):
        sandbox.check(target(plugin_dir, "pf_sbx_plain"))


def test_concurrent_checks_from_threads(sandbox: Sandbox, plugin_dir: Path) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            if index % 2:
                report = sandbox.check(target(plugin_dir, "pf_sbx_good", "GoodPlanner"))
                results[index] = report.metadata["name"]
            else:
                try:
                    sandbox.check(target(plugin_dir, "pf_sbx_raises"))
                except SandboxImportError as exc:
                    results[index] = exc.module
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {i: ("good" if i % 2 else "pf_sbx_raises") for i in range(8)}


def test_an_unresponsive_helper_is_abandoned_and_replaced(plugin_dir: Path) -> None:
    with Sandbox(timeout_s=0.5, reply_margin_s=0.5) as sandbox:
        sandbox.start()
        stuck = sandbox.helper_pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        with pytest.raises(SandboxImportError, match="did not answer"):
            sandbox.check(target(plugin_dir, "pf_sbx_plain", "PlainPlanner"))
        assert_gone(stuck)
        assert sandbox.check(target(plugin_dir, "pf_sbx_plain", "PlainPlanner")).ok
        assert sandbox.helper_starts == 2


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie awaiting an unreaping init counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_hung_child_dies_with_its_helper_and_the_check_is_retried(tmp_path: Path) -> None:
    marker = tmp_path / "first_child.pid"
    (tmp_path / "pf_sbx_hang_once.py").write_text(
        "import os, pathlib, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
    )
    with Sandbox(timeout_s=30.0) as sandbox:
        sandbox.start()
        helper = sandbox.helper_pid
        assert helper is not None

        def kill_helper_once_the_child_hangs() -> None:
            while not marker.exists():
                threading.Event().wait(0.01)
            os.kill(helper, signal.SIGKILL)

        killer = threading.Thread(target=kill_helper_once_the_child_hangs)
        killer.start()
        report = sandbox.check(ImportTarget("pf_sbx_hang_once", search_path=(str(tmp_path),)))
        killer.join()
        assert report.ok
        assert sandbox.helper_starts == 2
    first_child = int(marker.read_text())
    for _ in range(500):  # the kernel delivers the parent-death signal asynchronously
        if process_gone(first_child):
            break
        threading.Event().wait(0.01)
    assert process_gone(first_child)


def test_numeric_thread_pools_are_capped_in_the_child(tmp_path: Path) -> None:
    """A plugin importing BLAS on a many-core machine must stay inside the memory limit."""
    plugin = tmp_path / "threads_probe.py"
    plugin.write_text(
        "import os\n"
        "from planforge.contract import Planner\n\n\n"
        "class ThreadsProbe(Planner):\n"
        "    name = 'threads_probe'\n"
        "    description = os.environ.get('OPENBLAS_NUM_THREADS', 'unset')\n"
    )
    with Sandbox(timeout_s=10.0) as sandbox:
        report = sandbox.check(
            ImportTarget(module="threads_probe", qualname="ThreadsProbe", path=str(plugin))
        )
    assert report.metadata is not None
    assert report.metadata["description"] == os.environ.get("OPENBLAS_NUM_THREADS", "1")
