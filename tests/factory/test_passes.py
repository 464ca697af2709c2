"""Sandbox passes remembered across processes, and the `unchecked`/`active` status they give.

The store is a real JSON file; the factories run real sandbox checks, and "another process" is
a real `planforge planners check` process on the same state dir.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.errors import PlannerError, PlannerNotFound, PlannerQuarantined
from planforge.factory import PlannerFactory
from planforge.factory._passes import PassStore, SandboxPass
from planforge.settings import load_settings
from tests.factory.test_core import CodePlanner, planner_source


def a_pass(target: str, fingerprint: str = "10:1", passed_at: float = 1000.0) -> SandboxPass:
    return SandboxPass(target, fingerprint, target.partition(":")[2].lower(), passed_at, "passed")


# ---------------------------------------------------------------------------- the store


def test_a_pass_survives_a_new_store_and_holds_only_for_its_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sandbox_passes.json"
    assert PassStore(path).add(a_pass("m:A")) is True
    again = PassStore(path)
    assert again.get("m:A", "10:1") == a_pass("m:A")
    assert again.get("m:A", "11:2") is None  # the file changed since: unchecked again
    assert again.get("m:B", "10:1") is None


def test_a_newer_pass_replaces_the_older_one_of_the_same_target(tmp_path: Path) -> None:
    store = PassStore(tmp_path / "p.json")
    store.add(a_pass("m:A", "10:1"))
    store.add(a_pass("m:A", "12:3", passed_at=2000.0))
    assert len(store) == 1
    assert store.get("m:A", "10:1") is None
    assert store.get("m:A", "12:3") == a_pass("m:A", "12:3", passed_at=2000.0)


def test_a_pass_from_another_store_instance_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    reader = PassStore(path)
    assert reader.get("m:A", "10:1") is None
    PassStore(path).add(a_pass("m:A"))
    assert reader.get("m:A", "10:1") is not None


def test_the_store_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    store = PassStore(path, max_entries=3)
    for index, name in enumerate(["d", "a", "c", "b", "e"]):
        store.add(a_pass(f"m:{name}", passed_at=float(index)))
    assert len(store) == 3
    kept = [entry["target"] for entry in json.loads(path.read_text())["passes"]]
    assert kept == ["m:b", "m:c", "m:e"]
    assert len(PassStore(path, max_entries=1)) == 1


def test_a_source_without_a_fingerprint_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    store = PassStore(path)
    assert store.add(a_pass("m:A", fingerprint="")) is False
    assert store.get("m:A", "") is None
    assert not path.exists()


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"passes": 3}', "\x00\x01", ""],
    ids=["not-json", "a-list", "passes-not-a-list", "binary", "empty"],
)
def test_a_corrupt_file_counts_as_empty_and_is_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="planforge.sandbox"):
        store = PassStore(path)
        assert store.get("m:A", "10:1") is None
    assert any("unreadable" in record.getMessage() for record in caplog.records)
    store.add(a_pass("m:A"))
    assert PassStore(path).get("m:A", "10:1") == a_pass("m:A")


def test_malformed_passes_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    good = {"target": "m:A", "fingerprint": "10:1", "planner_name": "a", "passed_at": 1.0}
    good["self_test"] = "absent"
    bad = [{**good, "target": "m:B", "passed_at": "yesterday"}, {**good, "target": ""}, 42]
    path.write_text(json.dumps({"version": 1, "passes": [*bad, good]}))
    store = PassStore(path)
    assert len(store) == 1
    assert store.get("m:A", "10:1") is not None


def test_concurrent_adds_from_threads_and_two_stores_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    stores = [PassStore(path) for _ in range(2)]

    def add_many(worker: int) -> None:
        for index in range(10):
            stores[worker % 2].add(a_pass(f"m:P{worker}_{index}"))

    threads = [threading.Thread(target=add_many, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(PassStore(path)) == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_bad_input_is_rejected_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    with pytest.raises(TypeError):
        PassStore(path).add({"target": "m:A"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        PassStore(path, max_entries=0)
    assert not path.exists()


# ---------------------------------------------------------------------------- the status


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    for cls, name in (("Alpha", "alpha"), ("Beta", "beta")):
        (directory / f"{name}.py").write_text(planner_source(cls, name, keywords=(name,)))
    (directory / "broken.py").write_text(
        planner_source("Broken", "broken", module_prelude="raise RuntimeError('no config')")
    )
    return directory


def new_factory(plugins: Path, tmp_path: Path, **overrides: Any) -> PlannerFactory:
    return PlannerFactory(
        load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=10.0, **overrides),
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def factory(plugins: Path, tmp_path: Path) -> Iterator[PlannerFactory]:
    with new_factory(plugins, tmp_path) as built:
        yield built


def status(factory: PlannerFactory, name: str) -> str:
    return str(factory.describe_planner(name)["status"])


def test_a_planner_never_checked_is_unchecked_yet_selectable(factory: PlannerFactory) -> None:
    described = factory.describe_planner("alpha")
    assert described["status"] == "unchecked"
    assert "not checked in the sandbox yet" in described["status_reason"]
    assert described["sandbox_checked"] is False
    assert described["sandbox_passed_at"] is None
    assert factory.list_planners() == ["alpha", "beta", "broken"]  # selectable as before
    assert factory.select_best_planner_name("alpha") == "alpha"
    assert "alpha" not in sys.modules


def test_the_first_load_checks_it_and_makes_it_active(factory: PlannerFactory) -> None:
    factory.get_planner("alpha")
    described = factory.describe_planner("alpha")
    assert described["status"] == "active"
    assert described["status_reason"] is None
    assert described["sandbox_checked"] is True
    assert isinstance(described["sandbox_passed_at"], float)
    assert status(factory, "beta") == "unchecked"


def test_a_pass_is_remembered_by_a_new_factory_until_the_file_changes(
    factory: PlannerFactory, plugins: Path, tmp_path: Path
) -> None:
    factory.get_planner("alpha")
    with new_factory(plugins, tmp_path) as later:
        assert status(later, "alpha") == "active"
        assert later.describe_planner("alpha")["sandbox_checked"] is False  # not in this one
        assert status(later, "beta") == "unchecked"
        health = later.health_check()
        assert (health["active"], health["unchecked"], health["ready"]) == (1, 2, True)
    source = plugins / "alpha.py"
    source.write_text(planner_source("Alpha", "alpha", keywords=("alpha", "edited")))
    os.utime(source, ns=(1, 1_000_000_000_000))
    with new_factory(plugins, tmp_path) as edited:
        assert status(edited, "alpha") == "unchecked"


def test_a_check_by_another_process_shows_here_without_rediscovery(
    factory: PlannerFactory, plugins: Path, tmp_path: Path
) -> None:
    assert status(factory, "beta") == "unchecked"
    environment = {
        **os.environ,
        "FACTORY_PLUGIN_DIRS": str(plugins),
        "FACTORY_STATE_DIR": str(tmp_path / "state"),
        "FACTORY_CACHE_DIR": str(tmp_path / "other-cache"),
    }
    checked = subprocess.run(
        [sys.executable, "-m", "planforge.cli", "planners", "check", "beta", "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)[0]["result"] == "passed"
    generation = factory.diagnostics_json()["generation"]
    assert status(factory, "beta") == "active"
    assert factory.health_check()["active"] == 1
    assert factory.diagnostics_json()["generation"] == generation


def test_check_planners_reports_each_result_and_quarantines_failures(
    factory: PlannerFactory,
) -> None:
    results = {row["name"]: row for row in factory.check_planners()}
    assert list(results) == ["alpha", "beta", "broken"]
    assert results["alpha"]["result"] == "passed"
    assert results["alpha"]["status"] == "active"
    assert results["alpha"]["self_test"] == "absent"
    assert results["broken"]["result"] == "quarantined"
    assert results["broken"]["status"] == "quarantined"
    assert "RuntimeError: no config" in results["broken"]["reason"]
    assert status(factory, "broken") == "quarantined"
    with pytest.raises(PlannerQuarantined):
        factory.get_planner("broken")
    again = factory.check_planners(["broken", "alpha", "broken"])
    assert [(row["name"], row["result"]) for row in again] == [
        ("broken", "quarantined"),  # not run again: release it first
        ("alpha", "passed"),
    ]
    assert "broken" not in sys.modules


def test_check_planners_with_an_unknown_name_checks_nothing(
    factory: PlannerFactory, tmp_path: Path
) -> None:
    with pytest.raises(PlannerNotFound, match="'nope'"):
        factory.check_planners(["alpha", "nope"])
    assert status(factory, "alpha") == "unchecked"
    assert not (tmp_path / "state" / "sandbox_passes.json").exists()


def test_left_out_and_code_planners_are_skipped(plugins: Path, tmp_path: Path) -> None:
    with new_factory(plugins, tmp_path, exclude_planners=("beta",)) as factory:
        factory.register(CodePlanner)  # named "rebalancer"
        results = {row["name"]: row for row in factory.check_planners(["beta", "rebalancer"])}
        assert results["beta"]["result"] == "skipped"
        assert "FACTORY_EXCLUDE_PLANNERS" in results["beta"]["reason"]
        assert results["rebalancer"]["result"] == "skipped"
        assert status(factory, "rebalancer") == "active"  # code is never sandboxed
        assert status(factory, "beta") == "not_allowed"


def test_with_the_sandbox_off_planners_are_active_and_nothing_is_checked(
    plugins: Path, tmp_path: Path
) -> None:
    with new_factory(plugins, tmp_path, sandbox=False) as factory:
        described = factory.describe_planner("alpha")
        assert described["status"] == "active"
        assert described["sandbox_checked"] is False
        assert "FACTORY_SANDBOX=0" in described["status_reason"]
        assert factory.health_check()["unchecked"] == 0
        with pytest.raises(PlannerError, match="FACTORY_SANDBOX=0"):
            factory.check_planners()


def test_a_corrupt_pass_file_shows_planners_unchecked_and_never_crashes(
    plugins: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "sandbox_passes.json").write_text('{"passes": [{"target": 1}')
    with new_factory(plugins, tmp_path) as factory:
        assert status(factory, "alpha") == "unchecked"
        assert factory.check_planners(["alpha"])[0]["result"] == "passed"
    with new_factory(plugins, tmp_path) as later:
        assert status(later, "alpha") == "active"


def test_diagnostics_list_active_and_unchecked_apart(factory: PlannerFactory) -> None:
    factory.get_planner("alpha")
    data = factory.diagnostics_json()
    assert data["active"] == ["alpha"]
    assert data["unchecked"] == ["beta", "broken"]
    assert data["health"]["unchecked"] == 2
    assert "active=1 unchecked=2" in factory.diagnostics_report()
