"""A check that hangs is reported by the phase it hung in, in real sandboxed children.

Each plugin hangs in a different phase of the check: import, class lookup, metadata,
instantiation, self_test. The main process never imports any of them.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.errors import SANDBOX_PHASES, PlannerQuarantined, SandboxTimeout
from planforge.factory import PlannerFactory
from planforge.factory._sandbox import ImportTarget, Sandbox
from planforge.settings import load_settings

HANGS: dict[str, tuple[str, str]] = {
    "import": (
        "pf_phase_import",
        """
        import time
        time.sleep(60)
        """,
    ),
    "class_lookup": (
        "pf_phase_lookup",
        """
        import time

        def __getattr__(name):  # a lazy module: the class is made on first access
            time.sleep(60)
        """,
    ),
    "metadata": (
        "pf_phase_metadata",
        """
        import time
        from planforge.contract import Planner

        class SlowMeta(type):
            @property
            def description(cls):  # read by the metadata phase, and it hangs
                time.sleep(60)

        class Hung(Planner, metaclass=SlowMeta):
            name = "hung"
        """,
    ),
    "instantiate": (
        "pf_phase_init",
        """
        import time
        from planforge.contract import Planner

        class Hung(Planner):
            name = "hung"

            def __init__(self):
                time.sleep(60)
        """,
    ),
    "self_test": (
        "pf_phase_self_test",
        """
        import time
        from planforge.contract import Planner

        class Hung(Planner):
            name = "hung"

            def self_test(self):
                time.sleep(60)
        """,
    ),
}

MESSAGES = {
    "import": "Importing module 'pf_phase_import' did not finish within 1 s",
    "class_lookup": "Looking up class 'Hung' in module 'pf_phase_lookup' did not finish",
    "metadata": "Reading the metadata of planner 'hung' in module 'pf_phase_metadata' did not",
    "instantiate": "Instantiating planner 'hung' in module 'pf_phase_init' did not finish",
    "self_test": "self_test() of planner 'hung' in module 'pf_phase_self_test' did not finish",
}
ADVICE = {
    "import": "Make its import fast",
    "class_lookup": "Make the lookup fast",
    "metadata": "Make its metadata plain class attributes",
    "instantiate": "Make its __init__ fast",
    "self_test": "Make self_test fast",
}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phases")
    for module, source in HANGS.values():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(timeout_s=1.0) as shared:
        yield shared


@pytest.fixture(autouse=True, scope="module")
def _never_imported_in_the_main_process() -> Iterator[None]:
    yield
    assert sorted(name for name in sys.modules if name.startswith("pf_phase_")) == []


@pytest.mark.parametrize("phase", SANDBOX_PHASES)
def test_a_timeout_names_the_phase_that_hung_and_what_to_do(
    sandbox: Sandbox, plugin_dir: Path, phase: str
) -> None:
    module, _ = HANGS[phase]
    target = ImportTarget(module, "Hung", search_path=(str(plugin_dir),), planner_name="hung")
    with pytest.raises(SandboxTimeout) as caught:
        sandbox.check(target)
    error = caught.value
    assert error.phase == phase
    assert error.context["phase"] == phase
    assert error.message.startswith(MESSAGES[phase])
    assert f"(phase {phase})" in error.message
    assert ADVICE[phase] in error.message
    assert error.message.endswith("or raise FACTORY_SANDBOX_TIMEOUT_S.")
    assert error.reason.endswith(f"did not finish within 1 s (phase {phase})")
    report = sandbox.probe(target)
    assert report.timed_out
    assert report.phase == phase
    assert report.reason == error.reason


def test_a_timeout_without_a_planner_name_names_the_class(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    module, _ = HANGS["self_test"]
    with pytest.raises(SandboxTimeout) as caught:
        sandbox.check(ImportTarget(module, "Hung", search_path=(str(plugin_dir),)))
    assert caught.value.message.startswith(
        "self_test() of class 'Hung' in module 'pf_phase_self_test' did not finish within 1 s"
    )


def test_a_passing_check_reports_the_last_phase_it_entered(
    sandbox: Sandbox, plugin_dir: Path
) -> None:
    (plugin_dir / "pf_phase_fine.py").write_text(
        "from planforge.contract import Planner\n\nclass Fine(Planner):\n    name = 'fine'\n"
    )
    search = (str(plugin_dir),)
    assert sandbox.check(ImportTarget("pf_phase_fine", "Fine", search_path=search)).phase == (
        "instantiate"  # no self_test of its own: the check ends after instantiation
    )
    only_import = sandbox.check(ImportTarget("pf_phase_fine", search_path=search))
    assert only_import.phase == "import"


def test_the_quarantine_reason_carries_the_phase(plugin_dir: Path, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_self_test.py").write_text(textwrap.dedent(HANGS["self_test"][1]))
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=1.0)
    with PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    ) as factory:
        with pytest.raises(SandboxTimeout) as caught:
            factory.get_planner("hung")
        assert caught.value.phase == "self_test"
        assert caught.value.message.startswith(
            "self_test() of planner 'hung' in module 'slow_self_test' did not finish within 1 s"
        )
        (entry,) = factory.list_quarantined()
        assert entry["reason"] == "self_test() did not finish within 1 s (phase self_test)"
        with pytest.raises(PlannerQuarantined, match=r"self_test\(\) did not finish"):
            factory.get_planner("hung")
