from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import planforge
from planforge.factory import PlannerFactory
from planforge.settings import load_settings
from tests.factory.test_core import planner_source


@pytest.fixture
def default_factory(tmp_path: Path) -> Iterator[PlannerFactory]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "default_rebalancer.py").write_text(
        planner_source(
            "Rebalancer", "default_rebalancer", keywords=("rebalance", "portfolio"), tier="vip"
        )
    )
    factory = PlannerFactory(
        load_settings(plugin_dirs=(plugins,)),
        search_path=[],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )
    previous = planforge.set_default_factory(factory)
    try:
        yield factory
    finally:
        planforge.set_default_factory(previous)
        factory.close()


def test_module_level_api_acts_on_the_default_factory(default_factory: PlannerFactory) -> None:
    assert planforge.default_factory() is default_factory
    assert [spec.name for spec in planforge.discover()] == ["default_rebalancer"]
    assert planforge.select_best_planner_name("Rebalance my portfolio") == "default_rebalancer"
    planner = planforge.select_best_planner("Rebalance my portfolio")
    assert planner is planforge.get_planner("default_rebalancer")
    assert planforge.batch_select_best_planners("Rebalance", n=3) == ["default_rebalancer"]
    plan = planforge.run_plan("Rebalance my portfolio")
    assert plan.planner.name == "default_rebalancer"
    assert planforge.planner_stats()["default_rebalancer"]["invocations"] == 1
    assert planforge.health_check()["ready"] is True
    assert len(planforge.selection_profiles()) == 3
    assert planforge.explain_selection("Rebalance").winner == "default_rebalancer"


def test_async_variants(default_factory: PlannerFactory) -> None:
    async def scenario() -> tuple[str, str]:
        name = await planforge.aselect_best_planner_name("Rebalance my portfolio")
        plan = await planforge.arun_plan("Rebalance my portfolio")
        return name, plan.planner.name

    assert asyncio.run(scenario()) == ("default_rebalancer", "default_rebalancer")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        planforge.nonsense  # noqa: B018


def test_the_package_offers_every_function_the_default_api_defines() -> None:
    from planforge._api import MODULE_API
    from planforge.factory import _default as default

    assert set(MODULE_API) <= set(planforge.__all__)
    for name in MODULE_API:
        assert callable(vars(default)[name]), name  # defined in _default, not only listed
        assert getattr(planforge, name) is getattr(default, name)


def test_module_functions_show_the_methods_signatures_and_docstrings() -> None:
    import inspect

    from planforge.factory import _default as default

    for name in default.__all__:
        if name in ("default_factory", "set_default_factory"):
            continue
        function = getattr(default, name)
        method = getattr(PlannerFactory, name)
        expected = list(inspect.signature(method).parameters.values())[1:]
        assert list(inspect.signature(function).parameters.values()) == expected, name
        assert function.__doc__ == method.__doc__, name
        assert function.__name__ == name
        assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(method)


def test_selection_takes_a_request_object_or_its_fields(default_factory: PlannerFactory) -> None:
    request = planforge.SelectionRequest(
        "Rebalance my portfolio", required_capabilities=("plan",), prefer_production=False
    )
    by_fields = planforge.explain_selection(
        "Rebalance my portfolio", required_capabilities=["plan"], prefer_production=False
    )
    assert planforge.explain_selection(request) == by_fields
    assert planforge.select_best_planner_name(request) == "default_rebalancer"
    assert planforge.batch_select_best_planners(request, 2) == ["default_rebalancer"]
    with pytest.raises(planforge.PlannerSelectionError, match="not both"):
        planforge.select_best_planner_name(request, ["plan"])


def test_the_factory_package_reexports_lazily() -> None:
    """`planforge.factory` names the facade's parts, but a process that imports one factory
    module (a sandbox child) does not import the whole factory."""
    import subprocess
    import sys

    import planforge.factory

    assert planforge.factory.PlannerFactory is planforge.PlannerFactory
    assert planforge.factory.SelectionRequest is planforge.SelectionRequest
    code = (
        "import sys, planforge.factory._sandbox_child\n"
        "print('planforge.factory._core' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "False"
