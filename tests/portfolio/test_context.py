"""The portfolio context kind: its validator refuses what would break planning, naming the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from planforge.errors import InvalidContext
from planforge.portfolio.context import (
    MAX_POSITION_VALUE,
    ContextError,
    parse_context,
    validate_context,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"
INF = math.inf
NAN = math.nan


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def with_value(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    data = sample()
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


def rejection(data: dict[str, Any]) -> ContextError:
    with pytest.raises(ContextError) as caught:
        validate_context(data)
    return caught.value


def test_the_sample_portfolio_is_accepted() -> None:
    assert validate_context(sample()) is None


def test_a_context_error_is_an_input_error_of_the_portfolio_kind() -> None:
    error = rejection(with_value(("positions", 0, "current_price"), -5))
    assert isinstance(error, InvalidContext)
    assert (error.field, error.kind) == ("positions[0].current_price", "portfolio")
    assert error.message.startswith("context: positions[0].current_price: ")
    assert error.message.endswith("Fix that field and try again.")


@pytest.mark.parametrize(
    ("path", "field", "limit"),
    [
        (("positions", 0, "quantity"), "positions[0].quantity", "1e12"),
        (("positions", 1, "current_price"), "positions[1].current_price", "1e9"),
        (("positions", 2, "average_price"), "positions[2].average_price", "1e9"),
        (("securities", 3, "price"), "securities[3].price", "1e9"),
        (("cash",), "cash", "1e12"),
        (("fx_rates", "USD"), "fx_rates.USD", "1e6"),
        (("costs", "fixed"), "costs.fixed", "1e12"),
        (("min_trade_value",), "min_trade_value", "1e12"),
    ],
)
@pytest.mark.parametrize("value", [INF, -INF, NAN, 1e308, 10**400])
def test_non_finite_and_overflowing_amounts_are_refused_naming_the_field(
    path: tuple[str | int, ...], field: str, limit: str, value: Any
) -> None:
    error = rejection(with_value(path, value))
    assert error.field == field
    if value == -INF:  # below the lower bound too: either message names the field
        return
    assert error.problem == f"must be a finite number at most {limit}"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("securities", 0, "scores", "quality"), "securities[0].scores.quality"),
        (("securities", 0, "volatility"), "securities[0].volatility"),
        (("securities", 0, "dividend_yield"), "securities[0].dividend_yield"),
        (("targets", "by_security", "IWDA"), "targets.by_security.IWDA"),
        (("targets", "by_country", "US"), "targets.by_country.US"),
        (("costs", "percent"), "costs.percent"),
    ],
)
@pytest.mark.parametrize("value", [INF, NAN])
def test_non_finite_rates_scores_targets_and_costs_are_refused(
    path: tuple[str | int, ...], field: str, value: float
) -> None:
    error = rejection(with_value(path, value))
    assert (error.field, error.problem) == (field, "must be a finite number")


def test_non_finite_numbers_written_as_text_are_refused_too() -> None:
    assert rejection(with_value(("cash",), "inf")).field == "cash"
    assert rejection(with_value(("positions", 0, "quantity"), "1e13")).field == (
        "positions[0].quantity"
    )


def test_a_position_worth_more_than_the_maximum_in_base_currency_is_refused() -> None:
    data = sample()
    data["positions"][0].update(quantity=1e12, current_price=1e9)  # each within its bound
    error = rejection(data)
    assert error.field == "positions[0]"
    assert "must be a finite number at most 1e15" in error.problem
    assert "quantity x current_price x fx rate" in error.problem
    data["positions"][0].update(quantity=1e12, current_price=1000.0)  # 8.5e14 EUR: sound
    position = parse_context(data).positions[0]
    assert position.quantity * position.current_price * 0.853 <= MAX_POSITION_VALUE


def test_a_huge_volatility_is_refused() -> None:
    assert rejection(with_value(("securities", 0, "volatility"), 1e300)).field == (
        "securities[0].volatility"
    )
