"""The portfolio context: what the rebalancing planner knows about a personal portfolio.

Values are validated on the way in; a bad file is a `ContextError` naming the field
(`positions[3].quantity: ...`) and nothing is planned from it. Prices are in each security's
own currency; `fx_rates` converts them to `base_currency` (units of base per unit).

This is the `portfolio` context kind: `validate_context` is registered as its validator in
the `planforge.contexts` entry-point group, so a bad portfolio is refused before a planner
runs. Every number must be finite, and the amounts have sane maxima (`MAX_QUANTITY`,
`MAX_CASH`, `MAX_PRICE`, `MAX_FX_RATE`, and `MAX_POSITION_VALUE` for a position's value in
the base currency), so that no product of them overflows during planning.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from planforge.portfolio.errors import ContextError

__all__ = [
    "MAX_CASH",
    "MAX_FX_RATE",
    "MAX_POSITION_VALUE",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "Costs",
    "PortfolioContext",
    "Position",
    "Restrictions",
    "Security",
    "Targets",
    "load_context",
    "parse_context",
    "validate_context",
]

#: Largest number of units of one position, and largest cash amount (base currency).
MAX_QUANTITY = 1e12
MAX_CASH = 1e12
#: Largest price of one unit (its own currency), and largest FX rate (base per unit).
MAX_PRICE = 1e9
MAX_FX_RATE = 1e6
#: Largest value of one position in the base currency (quantity x price x FX rate).
MAX_POSITION_VALUE = 1e15
_MAX_VOLATILITY = 10.0

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _shown(limit: float) -> str:
    """`1e12` rather than `1e+12` or `1000000000000.0`."""
    mantissa, _, exponent = f"{limit:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def _at_most(limit: float) -> BeforeValidator:
    """Refuse a non-finite number, or one above `limit`, before anything multiplies it."""
    message = f"must be a finite number at most {_shown(limit)}"

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value  # strings and the rest: pydantic parses (finite only) and bounds them
        if isinstance(value, int) and value > limit:
            raise ValueError(message)
        if isinstance(value, float) and not (math.isfinite(value) and value <= limit):
            raise ValueError(message)
        return value

    return BeforeValidator(check)


Quantity = Annotated[float, Field(ge=0, le=MAX_QUANTITY), _at_most(MAX_QUANTITY)]
Cash = Annotated[float, Field(ge=0, le=MAX_CASH), _at_most(MAX_CASH)]
Price = Annotated[float, Field(gt=0, le=MAX_PRICE), _at_most(MAX_PRICE)]
Rate = Annotated[float, Field(gt=0, le=MAX_FX_RATE), _at_most(MAX_FX_RATE)]


class Security(BaseModel):
    """What is known about an instrument, held or not."""

    model_config = _STRICT

    symbol: str = Field(min_length=1)
    name: str = ""
    country: str = "unknown"
    industry: str = "unknown"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    price: Price | None = None
    #: Named quality scores in [0, 1] (for example quality, growth, stability).
    scores: dict[str, float] = Field(default_factory=dict)
    volatility: float = Field(default=0.2, ge=0, le=_MAX_VOLATILITY)
    dividend_yield: float = Field(default=0.0, ge=0, le=1)
    lot_size: int = Field(default=1, ge=1, le=int(MAX_QUANTITY))

    @model_validator(mode="after")
    def _check_scores(self) -> Security:
        for key, value in self.scores.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score {key!r} must be in [0, 1], got {value}")
        return self

    @property
    def quality(self) -> float:
        """The mean of the named scores; 0.5 when none are known."""
        if not self.scores:
            return 0.5
        return sum(self.scores[key] for key in sorted(self.scores)) / len(self.scores)


class Position(BaseModel):
    model_config = _STRICT

    symbol: str = Field(min_length=1)
    quantity: Quantity
    average_price: Annotated[float, Field(ge=0, le=MAX_PRICE), _at_most(MAX_PRICE)]
    current_price: Price
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    first_bought: date | None = None


class Targets(BaseModel):
    """Target weights in [0, 1] by security, country or industry; each set sums to <= 1."""

    model_config = _STRICT

    by_security: dict[str, float] = Field(default_factory=dict)
    by_country: dict[str, float] = Field(default_factory=dict)
    by_industry: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_weights(self) -> Targets:
        for label, weights in (
            ("by_security", self.by_security),
            ("by_country", self.by_country),
            ("by_industry", self.by_industry),
        ):
            for key, weight in weights.items():
                if not 0.0 <= weight <= 1.0:
                    raise ValueError(f"{label}.{key} must be in [0, 1], got {weight}")
            if sum(weights.values()) > 1.0 + 1e-9:
                raise ValueError(f"{label} weights sum to {sum(weights.values()):.4f} > 1")
        return self


class Restrictions(BaseModel):
    model_config = _STRICT

    ineligible: list[str] = Field(default_factory=list)
    recent_buys: dict[str, date] = Field(default_factory=dict)
    recent_sells: dict[str, date] = Field(default_factory=dict)
    allow_buy: bool = True
    allow_sell: bool = True


class Costs(BaseModel):
    """Transaction costs: a fixed amount in the base currency plus a share of the value."""

    model_config = _STRICT

    fixed: Cash = 0.0
    percent: float = Field(default=0.0, ge=0, le=0.1)


class PortfolioContext(BaseModel):
    model_config = _STRICT

    base_currency: str = Field(default="EUR", min_length=3, max_length=3)
    as_of: date = Field(default_factory=date.today)
    cash: Cash = 0.0
    fx_rates: dict[str, Rate] = Field(default_factory=dict)
    positions: list[Position] = Field(default_factory=list)
    securities: list[Security] = Field(default_factory=list)
    targets: Targets = Field(default_factory=Targets)
    restrictions: Restrictions = Field(default_factory=Restrictions)
    costs: Costs = Field(default_factory=Costs)
    min_trade_value: Cash = 0.0

    @model_validator(mode="after")
    def _check_references(self) -> PortfolioContext:
        known = {security.symbol for security in self.securities}
        if len(known) != len(self.securities):
            raise ValueError("securities: each symbol may appear once")
        held = [position.symbol for position in self.positions]
        if len(set(held)) != len(held):
            raise ValueError("positions: each symbol may appear once")
        for index, position in enumerate(self.positions):
            if position.symbol not in known:
                raise ValueError(
                    f"positions[{index}].symbol: {position.symbol!r} has no entry in securities"
                )
        currencies = {s.currency for s in self.securities} | {p.currency for p in self.positions}
        for currency in sorted(currencies - {self.base_currency}):
            rate = self.fx_rates.get(currency)
            if rate is None or not rate > 0:
                raise ValueError(
                    f"fx_rates.{currency}: a positive rate to {self.base_currency} is needed"
                )
        for symbol in sorted(self.targets.by_security):
            if symbol not in known:
                raise ValueError(f"targets.by_security.{symbol}: unknown security")
        for index, position in enumerate(self.positions):
            value = position.quantity * position.current_price * self.fx(position.currency)
            if not value <= MAX_POSITION_VALUE:
                raise ValueError(
                    f"positions[{index}]: its value in {self.base_currency} (quantity x "
                    f"current_price x fx rate = {value:.3g}) must be a finite number at most "
                    f"{_shown(MAX_POSITION_VALUE)}"
                )
        return self

    def fx(self, currency: str) -> float:
        """Units of the base currency per unit of `currency`."""
        return 1.0 if currency == self.base_currency else self.fx_rates[currency]

    def security(self, symbol: str) -> Security:
        for security in self.securities:
            if security.symbol == symbol:
                return security
        raise KeyError(symbol)

    def digest(self) -> str:
        """A stable digest of the whole context, for caches."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:32]


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "context"


def parse_context(
    raw: Mapping[str, Any] | PortfolioContext, source: str = "context"
) -> PortfolioContext:
    """Validate a raw mapping; raises `ContextError` naming the first bad field."""
    if isinstance(raw, PortfolioContext):
        return raw
    if not isinstance(raw, Mapping):
        raise ContextError("context", f"expected an object, got {type(raw).__name__}", source)
    try:
        return PortfolioContext.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "finite_number":
            message = "must be a finite number"
        field = _location(tuple(first["loc"]))
        if field == "context" and ": " in message:
            field, _, message = message.partition(": ")
        raise ContextError(field, message, source) from None


def validate_context(context: Mapping[str, Any]) -> None:
    """The `portfolio` kind's validator: raises `ContextError` naming the first bad field."""
    parse_context(context)


def load_context(path: str | Path) -> PortfolioContext:
    """Read a context from a JSON or TOML file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContextError("file", f"cannot read it ({exc.strerror})", str(file)) from None
    try:
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if file.suffix.lower() == ".toml" else "JSON"
        raise ContextError("file", f"not valid {kind} ({exc})", str(file)) from None
    return parse_context(data, str(file))
