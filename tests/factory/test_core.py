from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.contract import Plan, Planner, PlanStep
from planforge.errors import (
    CircuitOpenError,
    NoActivePlannersError,
    PlanExecutionError,
    PlannerNotAllowed,
    PlannerNotFound,
    PlannerQuarantined,
    SandboxImportError,
    SandboxTimeout,
)
from planforge.factory import PlannerFactory
from planforge.settings import load_settings


def planner_source(
    cls: str,
    name: str,
    *,
    capabilities: tuple[str, ...] = ("general",),
    keywords: tuple[str, ...] = (),
    tier: str = "stable",
    reliability: float | None = 0.8,
    production_ready: bool = True,
    body: str = "",
    module_prelude: str = "",
    plan_body: str = "return self.new_plan(objective, [PlanStep(id='1', action='do')])",
) -> str:
    reliability_line = f"reliability_score = {reliability!r}" if reliability is not None else ""
    return textwrap.dedent(
        f"""
from planforge.contract import Planner, PlanStep
{module_prelude}

class {cls}(Planner):
    name = {name!r}
    version = "1.0.0"
    capabilities = {capabilities!r}
    keywords = {keywords!r}
    tier = {tier!r}
    production_ready = {production_ready!r}
    {reliability_line}
    description = "planner {name}"
{textwrap.indent(textwrap.dedent(body), "    ")}
    def plan(self, objective, context):
        {plan_body}
"""
    )


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "rebalancer.py").write_text(
        planner_source(
            "Rebalancer",
            "rebalancer",
            capabilities=("rebalance", "portfolio"),
            keywords=("rebalance", "portfolio", "allocation"),
            tier="stable",
            reliability=0.8,
        )
    )
    (directory / "generic.py").write_text(
        planner_source("Generic", "generic", capabilities=("general",), tier="vip", reliability=0.8)
    )
    (directory / "newbie.py").write_text(
        planner_source("Newbie", "newbie", capabilities=("general",), reliability=None)
    )
    return directory


def make_factory(plugin_dir: Path, tmp_path: Path, **overrides: Any) -> PlannerFactory:
    settings = load_settings(plugin_dirs=(plugin_dir,), **overrides)
    return PlannerFactory(
        settings,
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def factory(plugin_dir: Path, tmp_path: Path) -> Iterator[PlannerFactory]:
    with make_factory(plugin_dir, tmp_path, sandbox_timeout_s=5.0) as built:
        yield built


def test_discover_finds_every_planner_without_importing_it(factory: PlannerFactory) -> None:
    specs = factory.discover()
    assert [spec.name for spec in specs] == ["generic", "newbie", "rebalancer"]
    assert "rebalancer" not in sys.modules
    assert factory.list_planners() == ["generic", "newbie", "rebalancer"]


def test_objective_relevance_picks_the_planner_whose_keywords_say_so(
    factory: PlannerFactory,
) -> None:
    # generic is vip (+0.08) against stable (+0.05): only relevance can make rebalancer win
    assert factory.select_best_planner_name("Rebalance my portfolio") == "rebalancer"
    assert factory.select_best_planner_name("something else entirely") == "generic"


def test_explanation_lists_scores_and_exclusions(factory: PlannerFactory) -> None:
    selection = factory.explain_selection("Rebalance my portfolio")
    assert selection.winner == "rebalancer"
    assert [score.name for score in selection.scores] == ["rebalancer", "generic"]
    reasons = {item.name: item.reason for item in selection.exclusions}
    assert "minimum reliability" in reasons["newbie"]


def test_not_allowed_planners_are_excluded_with_their_reason(
    plugin_dir: Path, tmp_path: Path
) -> None:
    with make_factory(plugin_dir, tmp_path, allowed_planners=("generic",)) as factory:
        selection = factory.explain_selection("Rebalance my portfolio")
        assert selection.winner == "generic"
        reasons = {item.name: item.reason for item in selection.exclusions}
        assert "ALLOWED_PLANNERS" in reasons["rebalancer"]
        with pytest.raises(PlannerNotAllowed, match="ALLOWED_PLANNERS"):
            factory.get_planner("rebalancer")
    with make_factory(plugin_dir, tmp_path, exclude_planners=("generic",)) as factory:
        assert "generic" not in factory.list_planners()
        with pytest.raises(PlannerNotAllowed, match="FACTORY_EXCLUDE_PLANNERS"):
            factory.get_planner("generic")


def test_nothing_selectable_says_why_per_planner(plugin_dir: Path, tmp_path: Path) -> None:
    with make_factory(plugin_dir, tmp_path, allowed_planners=("newbie",)) as factory:
        with pytest.raises(NoActivePlannersError) as info:
            factory.select_best_planner_name("anything")
        message = str(info.value)
        assert "newbie: below minimum reliability" in message
        assert "rebalancer: not allowed by ALLOWED_PLANNERS" in message


def test_get_planner_builds_one_shared_instance_after_the_sandbox(
    factory: PlannerFactory,
) -> None:
    first = factory.get_planner("rebalancer")
    assert factory.get_planner("rebalancer") is first
    description = factory.describe_planner("rebalancer")
    assert description["sandbox_checked"] is True
    assert description["instantiated"] is True
    assert factory.new_planner("rebalancer") is not first
    assert len(factory.instantiation_profiles()) == 2


def test_unknown_planner_names_the_known_ones(factory: PlannerFactory) -> None:
    with pytest.raises(PlannerNotFound, match="rebalancer"):
        factory.get_planner("nope")


def test_run_plan_records_outcomes(factory: PlannerFactory) -> None:
    plan = factory.run_plan("Rebalance my portfolio", {"cash": 1})
    assert isinstance(plan, Plan)
    assert plan.planner.name == "rebalancer"
    stats = factory.planner_stats("rebalancer")["rebalancer"]
    assert stats["invocations"] == 1
    assert stats["failures"] == 0
    assert stats["reliability"] > 0.8  # one success on a 0.8 prior
    assert factory.plan_profiles()[-1]["planner"] == "rebalancer"


def test_a_failing_planner_loses_reliability_and_trips_its_breaker(
    plugin_dir: Path, tmp_path: Path
) -> None:
    (plugin_dir / "flaky.py").write_text(
        planner_source(
            "Flaky",
            "flaky",
            keywords=("flaky",),
            reliability=0.9,
            plan_body="raise RuntimeError('market closed')",
        )
    )
    with make_factory(plugin_dir, tmp_path, breaker_min_calls=3, breaker_window=5) as factory:
        for _ in range(3):
            with pytest.raises(PlanExecutionError, match="market closed"):
                factory.run_plan("flaky", planner="flaky")
        stats = factory.planner_stats("flaky")["flaky"]
        assert stats["failures"] == 3
        assert stats["reliability"] < 0.9
        with pytest.raises(CircuitOpenError):
            factory.run_plan("flaky", planner="flaky")
        reasons = {item.name: item.reason for item in factory.explain_selection("flaky").exclusions}
        assert "circuit breaker" in reasons["flaky"]


def test_an_undeclared_planner_can_earn_its_way_in(factory: PlannerFactory) -> None:
    assert "newbie" not in [s.name for s in factory.explain_selection("x").scores]
    factory.run_plan("x", planner="newbie")
    factory._selector.last_reliability_refresh = (
        -1e9
    )  # let the refreshed reliability reach the index
    names = [score.name for score in factory.explain_selection("x").scores]
    assert "newbie" in names


@pytest.mark.parametrize(
    ("prelude", "error", "reason"),
    [
        ("import time\ntime.sleep(30)", SandboxTimeout, "did not finish"),
        ("import sys\nsys.exit(3)", SandboxImportError, "exit"),
        ("raise ValueError('bad config')", SandboxImportError, "ValueError"),
    ],
)
def test_hostile_plugin_is_quarantined_and_never_imported_here(
    plugin_dir: Path, tmp_path: Path, prelude: str, error: type[Exception], reason: str
) -> None:
    (plugin_dir / "hostile.py").write_text(
        planner_source("Hostile", "hostile", keywords=("hostile",), module_prelude=prelude)
    )
    with make_factory(plugin_dir, tmp_path, sandbox_timeout_s=1.0) as factory:
        with pytest.raises(error, match=reason):
            factory.get_planner("hostile")
        assert "hostile" not in sys.modules
        quarantined = factory.list_quarantined()
        assert [entry["planner_name"] for entry in quarantined] == ["hostile"]
        assert quarantined[0]["current"] is True
        with pytest.raises(PlannerQuarantined):
            factory.get_planner("hostile")
        reasons = {i.name: i.reason for i in factory.explain_selection("hostile").exclusions}
        assert reasons["hostile"].startswith("quarantined")
        # the factory carries on with everything else
        assert factory.select_best_planner_name("Rebalance my portfolio") == "rebalancer"


def test_quarantine_lifts_when_the_file_changes_or_is_released(
    plugin_dir: Path, tmp_path: Path
) -> None:
    hostile = plugin_dir / "hostile.py"
    hostile.write_text(
        planner_source("Hostile", "hostile", module_prelude="raise ValueError('broken')")
    )
    with make_factory(plugin_dir, tmp_path) as factory:
        with pytest.raises(SandboxImportError):
            factory.get_planner("hostile")
        # released but unchanged: checked again, fails again
        assert factory.release_quarantine("hostile") is True
        with pytest.raises(SandboxImportError):
            factory.get_planner("hostile")
        # fixed file: the quarantine no longer applies and the planner loads
        hostile.write_text(planner_source("Hostile", "hostile", keywords=("fixed",)))
        os.utime(hostile, ns=(1, 1_000_000_000_000))
        factory.discover()
        assert factory.get_planner("hostile").name == "hostile"
    # a quarantine persists for a new factory (a new process) on the same state dir
    assert factory.release_quarantine("missing") is False


def test_quarantine_is_shared_through_the_state_dir(plugin_dir: Path, tmp_path: Path) -> None:
    (plugin_dir / "hostile.py").write_text(
        planner_source("Hostile", "hostile", module_prelude="import os\nos._exit(7)")
    )
    with make_factory(plugin_dir, tmp_path) as first:
        with pytest.raises(SandboxImportError) as info:
            first.get_planner("hostile")
        assert info.value.exit_code == 7
    with make_factory(plugin_dir, tmp_path) as second:
        assert "hostile" not in second.list_planners()
        assert second.describe_planner("hostile")["status"] == "quarantined"
        with pytest.raises(PlannerQuarantined):
            second.get_planner("hostile")


def test_sandbox_off_imports_directly(plugin_dir: Path, tmp_path: Path) -> None:
    with make_factory(plugin_dir, tmp_path, sandbox=False) as factory:
        factory.get_planner("generic")
        assert factory.describe_planner("generic")["sandbox_checked"] is False


class CodePlanner(Planner):
    name = "rebalancer"
    version = "9.9.9"
    capabilities = ("rebalance",)
    tier = "gold"
    production_ready = True
    reliability_score = 0.95
    keywords = ("rebalance",)

    def plan(self, objective: str, context: Any) -> Plan:
        return self.new_plan(objective, [PlanStep(id="code", action="noop")])


def test_code_registration_wins_and_the_loser_is_reported(factory: PlannerFactory) -> None:
    spec = factory.register(CodePlanner)
    assert spec.source == "code"
    assert factory.describe_planner("rebalancer")["version"] == "9.9.9"
    assert factory.get_planner("rebalancer").__class__ is CodePlanner
    shadowed = factory.diagnostics_json()["discovery"]["shadowed"]
    assert [(s["name"], s["winner_source"], s["loser_source"]) for s in shadowed] == [
        ("rebalancer", "code", "directory")
    ]


def test_two_factories_share_nothing(plugin_dir: Path, tmp_path: Path) -> None:
    with make_factory(plugin_dir, tmp_path) as one, make_factory(plugin_dir, tmp_path) as two:
        one.register(CodePlanner)
        assert one.get_planner("rebalancer").__class__ is CodePlanner
        assert two.describe_planner("rebalancer")["version"] == "1.0.0"
        one.run_plan("x", planner="generic")
        assert two.planner_stats("generic")["generic"]["invocations"] == 0


def test_profiles_stay_bounded(plugin_dir: Path, tmp_path: Path) -> None:
    with make_factory(plugin_dir, tmp_path, max_profiles=5) as factory:
        for number in range(20):
            factory.select_best_planner_name(f"objective {number}")
        profiles = factory.selection_profiles()
        assert len(profiles) == 5
        assert profiles[-1]["best"] == "generic"


def test_self_heal_backs_off_without_sleeping_after_the_last_attempt(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    sleeps: list[float] = []
    now = [1000.0]
    factory = PlannerFactory(
        load_settings(plugin_dirs=(empty,)),
        search_path=[str(tmp_path / "site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        sleep=sleeps.append,
        clock=lambda: now[0],
    )
    report = factory.self_heal(max_attempts=3)
    assert report["attempts"] == 3
    assert report["after_active"] == 0
    assert sleeps == [0.2, 0.4]
    assert factory.self_heal()["cooldown_skip"] is True
    now[0] += 6.0
    (empty / "late.py").write_text(planner_source("Late", "late"))
    healed = factory.self_heal()
    assert healed["after_active"] == 1
    assert factory.self_heal()["attempts"] == 0  # a planner is active: nothing to do


def test_self_heal_on_empty_selection(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    factory = PlannerFactory(
        load_settings(plugin_dirs=(empty,), self_heal_on_empty=True),
        search_path=[str(tmp_path / "site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        sleep=lambda _: None,
    )
    assert factory.list_planners() == []
    (empty / "late.py").write_text(planner_source("Late", "late"))
    assert factory.select_best_planner_name("anything") == "late"


def test_non_blocking_self_heal_returns_at_once(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    factory = PlannerFactory(
        load_settings(plugin_dirs=(empty,)),
        search_path=[str(tmp_path / "site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        sleep=lambda _: None,
    )
    report = factory.self_heal(blocking=False)
    assert report["background"] is True
    assert report["attempts"] == 0
    assert factory._selector.heal_thread is not None
    factory._selector.heal_thread.join(timeout=30)
    assert not factory._selector.heal_thread.is_alive()


def test_health_and_diagnostics(factory: PlannerFactory, tmp_path: Path) -> None:
    health = factory.health_check()
    assert health["ready"] is True  # nothing checked yet, yet all three are selectable
    assert health["active"] == 0
    assert health["unchecked"] == 3
    assert health["selectable"] == 2
    factory.get_planner("generic")
    assert (factory.health_check()["active"], factory.health_check()["unchecked"]) == (1, 2)
    assert health["min_reliability_filter"] == 0.25
    assert factory.health_check(min_required=4)["ready"] is False
    path = factory.export_diagnostics(tmp_path / "out" / "diag.json")
    data = json.loads(path.read_text())
    assert set(data["records"]) == {"generic", "newbie", "rebalancer"}
    assert "rebalancer" in factory.diagnostics_report()


def test_concurrent_selection_and_loading_while_reloading(factory: PlannerFactory) -> None:
    factory.discover()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                name = factory.select_best_planner_name("Rebalance my portfolio")
                planner = factory.get_planner(name)
                assert planner.name == "rebalancer"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    generations = 0
    for _ in range(5):
        factory.reload_planners()
        generations += 1
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert errors == []
    built = [p for p in factory.instantiation_profiles() if p["planner"] == "rebalancer"]
    # at most one build per generation (the initial one plus each reload)
    assert 1 <= len(built) <= generations + 1


def test_one_build_under_contention(factory: PlannerFactory) -> None:
    factory.discover()
    barrier = threading.Barrier(16)
    results: list[Planner] = []

    def worker() -> None:
        barrier.wait()
        results.append(factory.get_planner("generic"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 16
    assert len({id(planner) for planner in results}) == 1
    assert len([p for p in factory.instantiation_profiles() if p["planner"] == "generic"]) == 1


def test_selection_is_identical_across_processes_with_different_hash_seeds(
    plugin_dir: Path, tmp_path: Path
) -> None:
    for number in range(8):
        (plugin_dir / f"twin{number}.py").write_text(
            planner_source(f"Twin{number}", f"twin{number}", reliability=0.8, tier="vip")
        )
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from planforge.factory._core import PlannerFactory
        from planforge.settings import load_settings
        factory = PlannerFactory(
            load_settings(plugin_dirs=(Path({str(plugin_dir)!r}),)),
            search_path=[],
            cache_dir=Path({str(tmp_path / "c")!r}),
            state_dir=Path({str(tmp_path / "s")!r}),
        )
        selection = factory.explain_selection("plan the general thing", ["general"])
        print(json.dumps([s.name for s in selection.scores]))
        """
    )
    outputs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][:3] == ["generic", "twin0", "twin1"]  # equal scores: name order


def test_outcomes_recorded_while_selecting_from_other_threads(
    plugin_dir: Path, tmp_path: Path
) -> None:
    ticks = iter(range(10**9))
    settings = load_settings(plugin_dirs=(plugin_dir,))
    with PlannerFactory(
        settings,
        search_path=[],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        clock=lambda: float(next(ticks)),  # every selection refreshes reliabilities
    ) as factory:
        factory.get_planner("generic")
        factory.get_planner("rebalancer")
        errors: list[BaseException] = []

        def planning(name: str) -> None:
            try:
                for _ in range(200):
                    factory.run_plan("x", planner=name)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def selecting() -> None:
            try:
                for _ in range(400):
                    factory.select_best_planner_name("Rebalance my portfolio")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=planning, args=(n,)) for n in ("generic", "rebalancer")]
        threads += [threading.Thread(target=selecting) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        stats = factory.planner_stats()
        assert stats["generic"]["invocations"] == 200
        assert stats["rebalancer"]["invocations"] == 200


def test_outcomes_before_the_first_selection_rank_as_after_it(
    plugin_dir: Path, tmp_path: Path
) -> None:
    """The ranking is built on first selection: what happened before it must count the same."""

    def build(state: str) -> PlannerFactory:
        return PlannerFactory(
            load_settings(plugin_dirs=(plugin_dir,)),
            search_path=[str(tmp_path / "empty-site")],
            cache_dir=tmp_path / "cache",
            state_dir=tmp_path / state,
            clock=lambda: 100.0,
        )

    def fail_generic_and_help_newbie(factory: PlannerFactory) -> None:
        for _ in range(5):
            factory.record_outcome("generic", 0.01, ok=False, error="boom")
            factory.record_outcome("newbie", 0.01, ok=True)

    with build("state-late") as late, build("state-early") as early:
        late.discover()
        fail_generic_and_help_newbie(late)  # before anything was ranked
        early.explain_selection("warm up")
        fail_generic_and_help_newbie(early)  # after
        early._selector.last_reliability_refresh = -1e9  # let the reliabilities reach it
        late_selection = late.explain_selection("Rebalance my portfolio")
        assert late_selection == early.explain_selection("Rebalance my portfolio")
        reasons = {item.name: item.reason for item in late_selection.exclusions}
        assert reasons["generic"].startswith("circuit breaker open")
        assert "newbie" in [score.name for score in late_selection.scores]
