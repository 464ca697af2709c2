"""The portfolio package's public face: every exported name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import planforge.portfolio as portfolio


def test_every_exported_name_resolves_to_the_object_of_its_module() -> None:
    from planforge.portfolio.evaluation import PortfolioSettings
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    assert sorted(portfolio.__all__) == portfolio.__all__
    for name in portfolio.__all__:
        assert getattr(portfolio, name) is not None, name
    assert portfolio.PortfolioSettings is PortfolioSettings
    assert portfolio.HolisticPortfolioPlanner is HolisticPortfolioPlanner


def test_importing_a_module_of_the_package_does_not_import_the_planner() -> None:
    code = (
        "import sys, planforge.portfolio.context, planforge.portfolio.evaluation; "
        "print('planforge.portfolio.planner' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
