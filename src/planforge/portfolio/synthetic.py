"""Realistic synthetic portfolios, seeded, for batch benchmarks, tests and what-if runs.

Each portfolio looks like the sample (`examples/portfolio.json`): 14 to 24 positions drawn
from a universe of about 36 securities in five currencies and eight countries, gains and
losses, recent buys and sells, an ineligible holding now and then, targets by country,
industry and a few securities, costs and a minimum trade value. The same `(seed, index)`
gives the same portfolio in every process and on every machine (no `hash()`, no clock).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, Final

__all__ = ["AS_OF", "generate_portfolio", "generate_portfolios"]

AS_OF: Final = date(2025, 6, 30)

#: country -> (currency, units of EUR per unit, typical price in that currency)
_MARKETS: Final = {
    "US": ("USD", 0.853, 180.0),
    "DE": ("EUR", 1.0, 150.0),
    "FR": ("EUR", 1.0, 250.0),
    "NL": ("EUR", 1.0, 300.0),
    "GB": ("GBP", 1.168, 30.0),
    "CH": ("CHF", 1.068, 90.0),
    "JP": ("JPY", 0.00589, 3000.0),
    "IE": ("EUR", 1.0, 60.0),
}
_COUNTRY_WEIGHTS: Final = (10, 4, 3, 2, 3, 3, 3, 2)
_INDUSTRIES: Final = (
    "Technology",
    "Healthcare",
    "Financials",
    "Consumer Staples",
    "Industrials",
    "Energy",
    "Consumer Discretionary",
    "Materials",
    "Communication",
)
_SCORES: Final = ("quality", "growth", "stability")
_UNIVERSE: Final = (32, 40)
_POSITIONS: Final = (14, 24)


def generate_portfolios(count: int, seed: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` portfolios as `(id, context)`, ids `p000001`... in order, one at a time."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    width = max(6, len(str(count)))
    for index in range(count):
        yield f"p{index + 1:0{width}d}", generate_portfolio(index, seed)


def generate_portfolio(index: int, seed: int = 0) -> dict[str, Any]:
    """Portfolio `index` of the series `seed`, as a context the portfolio planner reads."""
    rng = random.Random(f"planforge-portfolio:{seed}:{index}")
    securities = [_security(rng, n) for n in range(rng.randint(*_UNIVERSE))]
    held = rng.sample(securities, rng.randint(*_POSITIONS))
    positions = [_position(rng, security) for security in held]
    invested = sum(_value_eur(p["quantity"], p["current_price"], p["currency"]) for p in positions)
    held_symbols = [p["symbol"] for p in positions]
    return {
        "base_currency": "EUR",
        "as_of": AS_OF.isoformat(),
        "cash": round(invested * rng.uniform(0.0, 0.12), 2),
        "fx_rates": _fx_rates(rng),
        "positions": positions,
        "securities": securities,
        "targets": _targets(rng, securities),
        "restrictions": _restrictions(rng, held_symbols, securities),
        "costs": {
            "fixed": rng.choice((0.0, 1.0, 2.0, 4.9)),
            "percent": rng.choice((0.0005, 0.001, 0.0025)),
        },
        "min_trade_value": float(rng.choice((100, 250, 500))),
    }


def _security(rng: random.Random, number: int) -> dict[str, Any]:
    country = rng.choices(tuple(_MARKETS), weights=_COUNTRY_WEIGHTS)[0]
    currency, _, typical = _MARKETS[country]
    industry = "Diversified" if country == "IE" else rng.choice(_INDUSTRIES)
    symbol = f"{country}{number:02d}{'ABCDEFGHJK'[rng.randrange(10)]}"
    return {
        "symbol": symbol,
        "name": f"{industry} {country} {number}",
        "country": country,
        "industry": industry,
        "currency": currency,
        "price": round(typical * rng.lognormvariate(0.0, 0.6), 2),
        "scores": {name: round(rng.uniform(0.35, 0.95), 2) for name in _SCORES},
        "volatility": round(rng.uniform(0.12, 0.45), 2),
        "dividend_yield": round(rng.choice((0.0, rng.uniform(0.0, 0.05))), 3),
        "lot_size": 100 if country == "JP" and rng.random() < 0.3 else 1,
    }


def _position(rng: random.Random, security: dict[str, Any]) -> dict[str, Any]:
    price = float(security["price"])
    _, fx, _ = _MARKETS[security["country"]]
    lot = int(security["lot_size"])
    target_value = rng.uniform(1_500.0, 15_000.0) / fx
    quantity = max(lot, round(target_value / price / lot) * lot)
    bought = AS_OF - timedelta(days=rng.randint(10, 2_400))
    return {
        "symbol": security["symbol"],
        "quantity": quantity,
        "average_price": round(price / rng.uniform(0.5, 1.9), 2),
        "current_price": price,
        "currency": security["currency"],
        "first_bought": bought.isoformat(),
    }


def _value_eur(quantity: float, price: float, currency: str) -> float:
    rates = {market[0]: market[1] for market in _MARKETS.values()}
    return quantity * price * rates[currency]


def _fx_rates(rng: random.Random) -> dict[str, float]:
    rates: dict[str, float] = {}
    for currency, fx, _ in _MARKETS.values():
        if currency != "EUR" and currency not in rates:
            rates[currency] = round(fx * rng.uniform(0.97, 1.03), 6)
    return rates


def _targets(rng: random.Random, securities: list[dict[str, Any]]) -> dict[str, Any]:
    countries = sorted({s["country"] for s in securities})
    industries = sorted({s["industry"] for s in securities})
    favourites = rng.sample([s["symbol"] for s in securities], 3)
    return {
        "by_country": _weights(rng, countries, 1.0),
        "by_industry": _weights(rng, industries, 1.0),
        "by_security": {symbol: round(rng.uniform(0.03, 0.08), 2) for symbol in favourites},
    }


def _weights(rng: random.Random, keys: list[str], total: float) -> dict[str, float]:
    raw = [rng.uniform(0.3, 1.0) for _ in keys]
    scale = total / sum(raw)
    weights = {key: round(weight * scale, 3) for key, weight in zip(keys, raw, strict=True)}
    weights[keys[-1]] = round(total - sum(weights[key] for key in keys[:-1]), 3)
    return weights


def _restrictions(
    rng: random.Random, held: list[str], securities: list[dict[str, Any]]
) -> dict[str, Any]:
    others = [s["symbol"] for s in securities if s["symbol"] not in held]
    sold = rng.sample(others, min(len(others), rng.randint(0, 2)))
    return {
        "ineligible": rng.sample(held, rng.choice((0, 0, 1, 2))),
        "recent_buys": {
            symbol: (AS_OF - timedelta(days=rng.randint(1, 25))).isoformat()
            for symbol in rng.sample(held, rng.randint(0, 2))
        },
        "recent_sells": {
            symbol: (AS_OF - timedelta(days=rng.randint(5, 80))).isoformat() for symbol in sold
        },
        "allow_buy": True,
        "allow_sell": True,
    }
