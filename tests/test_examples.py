"""The example planners (examples/plugins): honest about the contexts they read."""

from __future__ import annotations

import math
from typing import Any

import pytest

from planforge.errors import InvalidContext
from planforge.portfolio.errors import ContextError

examples = pytest.importorskip("planforge_examples", reason="pip install ./examples/plugins")

from planforge_examples.checklist import ChecklistPlanner, ScratchPlanner  # noqa: E402
from planforge_examples.rebalance import ThresholdRebalancePlanner  # noqa: E402
from planforge_examples.risk import RiskReviewPlanner, validate_hotspots  # noqa: E402


def portfolio(**overrides: Any) -> dict[str, Any]:
    """Two held securities in two currencies and one to buy, with targets for all three."""
    data: dict[str, Any] = {
        "base_currency": "EUR",
        "cash": 1000.0,
        "fx_rates": {"USD": 0.5},
        "positions": [
            {"symbol": "BIG", "quantity": 100, "average_price": 50, "current_price": 60},
            {
                "symbol": "US",
                "quantity": 10,
                "average_price": 100,
                "current_price": 200,
                "currency": "USD",
            },
        ],
        "securities": [
            {"symbol": "BIG", "price": 60},
            {"symbol": "US", "currency": "USD", "price": 200},
            {"symbol": "NEW", "price": 30, "lot_size": 10},
        ],
        "targets": {"by_security": {"BIG": 0.5, "US": 0.2, "NEW": 0.3}},
        "costs": {"fixed": 1.0, "percent": 0.001},
    }
    data.update(overrides)
    return data


def test_the_example_planners_declare_what_they_read() -> None:
    assert ThresholdRebalancePlanner.spec().context_kind == "portfolio"
    assert RiskReviewPlanner.spec().context_kind == "hotspots"
    assert ChecklistPlanner.spec().context_kind == "any"
    assert ScratchPlanner.spec().context_kind == "any"


def test_threshold_rebalance_sells_first_and_buys_whole_lots_with_the_cash() -> None:
    # total = 6000 + 10 * 200 * 0.5 + 1000 = 8000: BIG 75 % (target 50), US 12.5 % (20), NEW 0
    plan = ThresholdRebalancePlanner().plan("Rebalance", portfolio())
    steps = [(s.action, s.params["symbol"], s.params["quantity"]) for s in plan.steps]
    assert steps == [("sell", "BIG", 33.0), ("buy", "NEW", 80.0), ("buy", "US", 5.0)]
    sells = [s.id for s in plan.steps if s.action == "sell"]
    assert all(s.depends_on == sells for s in plan.steps if s.action == "buy")
    assert plan.steps[1].params["quantity"] % 10 == 0  # NEW trades in lots of 10
    assert plan.metrics["cash_after"] >= 0
    assert plan.metrics["max_drift_after"] < plan.metrics["max_drift_before"]
    assert all(math.isfinite(value) for value in plan.metrics.values())


def test_threshold_rebalance_keeps_the_rules_of_the_portfolio() -> None:
    restricted = portfolio(restrictions={"ineligible": ["NEW"], "allow_sell": False})
    plan = ThresholdRebalancePlanner().plan("Rebalance", restricted)
    assert [(s.action, s.params["symbol"]) for s in plan.steps] == [("buy", "US")]
    assert any("BIG" in warning for warning in plan.warnings)
    assert any("NEW" in warning for warning in plan.warnings)


def test_threshold_rebalance_refuses_a_bad_portfolio_naming_the_field() -> None:
    bad = portfolio()
    bad["positions"][0]["current_price"] = -5
    with pytest.raises(ContextError) as caught:
        ThresholdRebalancePlanner().plan("Rebalance", bad)
    assert caught.value.field == "positions[0].current_price"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({}, "hotspots"),
        ({"hotspots": [1, 2]}, "hotspots"),
        ({"hotspots": {"a": 1}, "extra": 1}, "extra"),
        ({"hotspots": {"a": -1}}, "hotspots.a"),
        ({"hotspots": {"a": float("nan")}}, "hotspots.a"),
        ({"hotspots": {"a": True}}, "hotspots.a"),
    ],
)
def test_the_hotspots_kind_refuses_a_bad_context_naming_the_field(
    context: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidContext) as caught:
        validate_hotspots(context)
    assert caught.value.field == field


def test_risk_review_orders_hotspots_riskiest_first() -> None:
    plan = RiskReviewPlanner().plan("review", {"hotspots": {"b": 0.5, "a": 0.9, "c": 0.5}})
    assert [s.params["target"] for s in plan.steps] == ["a", "b", "c"]
