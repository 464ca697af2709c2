"""An independent judge of the holistic planner's plans.

Written from the documented rules (README "Plan a portfolio rebalance", the docstring of
`planforge.portfolio.evaluation`), never from planforge's own evaluation, model or rules
code, so a shared misreading cannot make the planner and its judge agree by construction:

- `generate_instance`: a seeded random small portfolio that exercises every trading rule;
- `simulate`: one plan walked step by step, with the rule it breaks or its exact figures;
- `broad_space` / `broad_best`: the best plan by brute force over a broad action space,
  scored by a vectorised numpy kernel (checked against `simulate` by the tests).
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

Context = dict[str, Any]
#: One trade: (side, symbol, quantity).
Step = tuple[str, str, float]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AS_OF = date(2025, 6, 30)
SET_NAMES = ("by_security", "by_country", "by_industry")
_COUNTRIES = ("US", "DE", "FR")
_INDUSTRIES = ("Tech", "Health", "Energy")
_LOTS = (1, 1, 1, 5, 10)
#: Invested value below this share of the total counts as nothing invested (documented).
_INVESTED_EPSILON = 1e-9
_CHUNK = 1 << 17


def _ago(days: int) -> str:
    """The ISO date `days` before the instances' `as_of`."""
    return (AS_OF - timedelta(days=days)).isoformat()


def _weights(rng: random.Random, keys: list[str], total: float) -> dict[str, float]:
    """Random weights over `keys` summing to `total` (4 decimals, the last one absorbs)."""
    raw = [rng.uniform(0.2, 1.0) for _ in keys]
    scale = total / sum(raw)
    weights = {key: round(w * scale, 4) for key, w in zip(keys[:-1], raw, strict=False)}
    weights[keys[-1]] = round(total - sum(weights.values()), 4)
    return weights


def _security(
    rng: random.Random, index: int, countries: list[str], industries: list[str]
) -> Context:
    """A security with its price, currency, scores and lot size."""
    return {
        "symbol": f"S{index}",
        "country": rng.choice(countries),
        "industry": rng.choice(industries),
        "currency": rng.choice(("EUR", "USD")),
        "price": round(rng.uniform(5.0, 500.0), 2),
        "scores": {"quality": round(rng.uniform(0.3, 0.95), 3)},
        "lot_size": rng.choice(_LOTS),
    }


def _position(rng: random.Random, security: Context, loss: bool, young: bool) -> Context:
    """A held position of `security`, at a deep loss or bought recently when asked."""
    lot = int(security["lot_size"])
    odd = rng.randint(1, lot - 1) if lot > 1 and rng.random() < 0.2 else 0
    quantity = lot * rng.randint(1, 40) + odd
    ratio = rng.uniform(0.55, 0.79) if loss else rng.uniform(0.82, 1.9)  # current / average
    days = rng.randint(1, 89) if young else rng.randint(120, 2500)
    return {
        "symbol": security["symbol"],
        "quantity": float(quantity),
        "average_price": round(security["price"] / ratio, 2),
        "current_price": security["price"],
        "currency": security["currency"],
        "first_bought": _ago(days),
    }


def _restrictions(rng: random.Random, symbols: list[str], held: list[str]) -> Context:
    """One ineligible symbol; sometimes trades inside (or just outside) the cooldowns."""
    sells: dict[str, str] = {}
    buys: dict[str, str] = {}
    if rng.random() < 0.5:
        sells[rng.choice(held)] = _ago(rng.randint(1, 179))
    if rng.random() < 0.5:
        buys[rng.choice(symbols)] = _ago(rng.randint(1, 29))
    if rng.random() < 0.3:  # on or past the boundary: allowed again
        sells.setdefault(rng.choice(held), _ago(rng.choice((180, 181, 400))))
    if rng.random() < 0.3:
        buys.setdefault(rng.choice(symbols), _ago(rng.choice((30, 31, 90))))
    return {
        "ineligible": [rng.choice(symbols)],
        "recent_buys": buys,
        "recent_sells": sells,
        "allow_buy": True,
        "allow_sell": True,
    }


def _targets(
    rng: random.Random, symbols: list[str], countries: list[str], industries: list[str]
) -> Context:
    """Targets by a subset of securities (sum < 1), by country and by industry (0.85-1)."""
    chosen = sorted(rng.sample(symbols, rng.randint(1, len(symbols) - 1)))
    return {
        "by_security": _weights(rng, chosen, rng.uniform(0.3, 0.9)),
        "by_country": _weights(rng, countries, rng.uniform(0.85, 1.0)),
        "by_industry": _weights(rng, industries, rng.uniform(0.85, 1.0)),
    }


def generate_instance(seed: int) -> Context:
    """A seeded random small portfolio context in the `portfolio` context format."""
    rng = random.Random(seed)
    count = rng.randint(3, 7)
    countries = list(_COUNTRIES[: rng.randint(2, 3)])
    industries = list(_INDUSTRIES[: rng.randint(2, 3)])
    securities = [_security(rng, i, countries, industries) for i in range(count)]
    symbols = [s["symbol"] for s in securities]
    not_held = set(rng.sample(symbols, rng.randint(1, min(2, count - 2))))
    held = [s for s in symbols if s not in not_held]
    young = rng.choice(held)
    loser = rng.choice(held) if rng.random() < 0.5 else None
    by_symbol = {s["symbol"]: s for s in securities}
    positions = [_position(rng, by_symbol[s], s == loser, s == young) for s in held]
    fx = round(rng.uniform(0.8, 1.2), 4)
    invested = sum(
        p["quantity"] * p["current_price"] * (fx if p["currency"] == "USD" else 1.0)
        for p in positions
    )
    share = rng.uniform(0.0, 0.3)
    return {
        "base_currency": "EUR",
        "as_of": AS_OF.isoformat(),
        "cash": round(share * invested / (1.0 - share), 2),
        "fx_rates": {"USD": fx},
        "positions": positions,
        "securities": securities,
        "targets": _targets(rng, symbols, countries, industries),
        "restrictions": _restrictions(rng, symbols, held),
        "costs": {
            "fixed": round(rng.uniform(0.0, 5.0), 2),
            "percent": round(rng.uniform(0.0, 0.003), 5),
        },
        "min_trade_value": round(rng.uniform(0.0, 100.0), 2),
    }


@dataclass(frozen=True)
class Settings:
    """The `[planner]` keys the score and the rules read (documented defaults)."""

    allocation_weight: float = 0.5
    diversification_weight: float = 0.3
    quality_weight: float = 0.2
    cost_penalty_factor: float = 1.0
    min_hold_days: int = 90
    sell_cooldown_days: int = 180
    buy_cooldown_days: int = 30
    max_loss: float = -0.2
    allow_buy: bool = True
    allow_sell: bool = True
    min_trade_value: float | None = None  # None: the context's
    max_depth: int = 5

    @property
    def weight_sum(self) -> float:
        """w_A + w_D + w_Q, the score's denominator."""
        return self.allocation_weight + self.diversification_weight + self.quality_weight


def preset_settings(name: str = "default") -> Settings:
    """The documented defaults overridden by a shipped preset's `[planner]` table."""
    text = (resources.files("planforge.portfolio") / "presets" / f"{name}.toml").read_text("utf-8")
    table: dict[str, Any] = tomllib.loads(text).get("planner", {})
    known = {f.name for f in fields(Settings)}
    return replace(Settings(), **{key: value for key, value in table.items() if key in known})


@dataclass(frozen=True)
class Market:
    """A context read for simulation: prices, holdings, labels, targets and restrictions."""

    symbols: tuple[str, ...]
    price: dict[str, float]  # held: the position's current price; else the security's
    rate: dict[str, float | None]  # base per unit of the price's currency
    held: dict[str, float]
    average: dict[str, float]
    first_bought: dict[str, date | None]
    quality: dict[str, float]
    labels: dict[str, dict[str, str]]  # set name -> symbol -> group
    targets: dict[str, dict[str, float]]  # the non-empty target sets
    lot: dict[str, int]
    cash: float
    fixed: float
    percent: float
    min_trade_value: float
    as_of: date
    ineligible: frozenset[str]
    recent_buys: dict[str, date]
    recent_sells: dict[str, date]
    allow_buy: bool
    allow_sell: bool

    def value(self, symbol: str, quantity: float) -> float:
        """Quantity x price x FX rate, in that order (the documented formula)."""
        rate = self.rate[symbol]
        assert rate is not None
        return quantity * self.price[symbol] * rate

    @property
    def total(self) -> float:
        """T_0: the held value plus the cash before trading."""
        return math.fsum(self.value(s, q) for s, q in self.held.items() if q > 0) + self.cash


def _quality(security: Context) -> float:
    scores: dict[str, float] = security.get("scores") or {}
    return sum(scores[k] for k in sorted(scores)) / len(scores) if scores else 0.5


def _rate(context: Context, currency: str) -> float | None:
    if currency == context.get("base_currency", "EUR"):
        return 1.0
    rate = context.get("fx_rates", {}).get(currency)
    return float(rate) if rate else None


def _label(security: Context, name: str) -> str:
    """The security's group in target set `name`: itself, its country or its industry."""
    if name == "by_security":
        return str(security["symbol"])
    return str(security.get(name.removeprefix("by_"), "unknown"))


def _dates(raw: dict[str, str]) -> dict[str, date]:
    return {key: date.fromisoformat(str(value)) for key, value in raw.items()}


def _prices(context: Context) -> tuple[dict[str, float], dict[str, float | None]]:
    """Each symbol's price and FX rate: the position's when held, else the security's."""
    positions = {p["symbol"]: p for p in context.get("positions", [])}
    price: dict[str, float] = {}
    rate: dict[str, float | None] = {}
    for security in context["securities"]:
        symbol = security["symbol"]
        held = positions.get(symbol)
        quote = held["current_price"] if held else security.get("price")
        price[symbol] = float(quote or math.nan)
        rate[symbol] = _rate(context, (held or security).get("currency", "EUR"))
    return price, rate


def market_of(context: Context) -> Market:
    """Read a raw context dict (as `generate_instance` makes) for the simulator."""
    securities = context["securities"]
    positions = context.get("positions", [])
    restrictions = context.get("restrictions", {})
    costs = context.get("costs", {})
    targets = {name: dict(context.get("targets", {}).get(name, {})) for name in SET_NAMES}
    price, rate = _prices(context)
    return Market(
        symbols=tuple(s["symbol"] for s in securities),
        price=price,
        rate=rate,
        held={p["symbol"]: float(p["quantity"]) for p in positions},
        average={p["symbol"]: float(p["average_price"]) for p in positions},
        first_bought={
            p["symbol"]: date.fromisoformat(p["first_bought"]) if p.get("first_bought") else None
            for p in positions
        },
        quality={s["symbol"]: _quality(s) for s in securities},
        labels={name: {s["symbol"]: _label(s, name) for s in securities} for name in SET_NAMES},
        targets={name: weights for name, weights in targets.items() if weights},
        lot={s["symbol"]: int(s.get("lot_size", 1)) for s in securities},
        cash=float(context.get("cash", 0.0)),
        fixed=float(costs.get("fixed", 0.0)),
        percent=float(costs.get("percent", 0.0)),
        min_trade_value=float(context.get("min_trade_value", 0.0)),
        as_of=date.fromisoformat(str(context["as_of"])),
        ineligible=frozenset(restrictions.get("ineligible", [])),
        recent_buys=_dates(restrictions.get("recent_buys", {})),
        recent_sells=_dates(restrictions.get("recent_sells", {})),
        allow_buy=bool(restrictions.get("allow_buy", True)),
        allow_sell=bool(restrictions.get("allow_sell", True)),
    )


def _sell_problem(market: Market, settings: Settings, symbol: str, quantity: float) -> str | None:
    """Why this sell breaks a sell rule (None: it does not)."""
    if quantity > market.held.get(symbol, 0.0):
        return f"sells {quantity:g} {symbol} but holds {market.held.get(symbol, 0.0):g}"
    if not (settings.allow_sell and market.allow_sell):
        return "selling is not allowed"
    bought = market.first_bought.get(symbol)
    if bought is not None and (market.as_of - bought).days < settings.min_hold_days:
        return f"minimum hold: {symbol} held {(market.as_of - bought).days} days"
    sold = market.recent_sells.get(symbol)
    if sold is not None and (market.as_of - sold).days < settings.sell_cooldown_days:
        return f"sell cooldown: {symbol} sold {(market.as_of - sold).days} days ago"
    average = market.average.get(symbol, 0.0)
    if average > 0 and market.price[symbol] / average - 1.0 < settings.max_loss:
        return f"maximum loss: {symbol} at {market.price[symbol] / average - 1.0:.1%}"
    return None


def _buy_problem(market: Market, settings: Settings, symbol: str) -> str | None:
    """Why a buy of `symbol` breaks a buy rule (None: it does not)."""
    if not (settings.allow_buy and market.allow_buy):
        return "buying is not allowed"
    bought = market.recent_buys.get(symbol)
    if bought is not None and (market.as_of - bought).days < settings.buy_cooldown_days:
        return f"buy cooldown: {symbol} bought {(market.as_of - bought).days} days ago"
    return None


def step_problem(market: Market, settings: Settings, step: Step) -> str | None:
    """Why one step breaks a per-step rule on its own (cash and repeats aside)."""
    side, symbol, quantity = step
    if side not in ("buy", "sell"):
        return f"unknown side {side!r}"
    if symbol not in market.price:
        return f"unknown symbol {symbol}"
    if not (math.isfinite(quantity) and quantity > 0):
        return f"quantity {quantity} is not positive"
    if math.isnan(market.price[symbol]) or market.rate[symbol] is None:
        return f"{symbol} has no price or FX rate"
    if symbol in market.ineligible:
        return f"{symbol} is ineligible"
    minimum = settings.min_trade_value
    minimum = market.min_trade_value if minimum is None else minimum
    if market.value(symbol, quantity) < minimum:
        return f"minimum trade value: {market.value(symbol, quantity):.2f} < {minimum:.2f}"
    if side == "sell":
        return _sell_problem(market, settings, symbol, quantity)
    return _buy_problem(market, settings, symbol)


@dataclass(frozen=True)
class Outcome:
    """A simulated plan: feasible or the rule it breaks, and its figures."""

    feasible: bool
    broken: str
    score: float
    costs: float
    cash_after: float
    cash_required: float
    cash_generated: float
    parts: dict[str, float]  # allocation_fit, fit_<set>, diversification, quality, cost_penalty


def _fits(market: Market, values: dict[str, float], total: float) -> dict[str, float]:
    """fit_S of each target set present, and their mean A (1.0 without targets)."""
    share = 1.0 / total if total > 0 else 0.0
    parts: dict[str, float] = {}
    for name, weights in market.targets.items():
        groups = dict.fromkeys(weights, 0.0)
        for symbol, value in values.items():
            if market.labels[name][symbol] in groups:
                groups[market.labels[name][symbol]] += value
        distance = sum(abs(groups[g] * share - t) for g, t in weights.items())
        parts[f"fit_{name}"] = 1.0 - 0.5 * distance
    parts["allocation_fit"] = sum(parts.values()) / len(parts) if parts else 1.0
    return parts


def state_score(
    market: Market, holdings: dict[str, float], cash: float, costs: float, settings: Settings
) -> tuple[float, dict[str, float]]:
    """The documented score of one portfolio state, term by term."""
    values = {s: market.value(s, q) for s, q in holdings.items() if q > 0}
    invested = math.fsum(values.values())
    total = invested + cash
    parts = _fits(market, values, total)
    live = invested > _INVESTED_EPSILON * max(total, 0.0)
    squares = sum((v / invested) ** 2 for v in values.values()) if live else 1.0
    parts["diversification"] = 1.0 - squares
    quality = sum(market.quality[s] * v for s, v in values.items())
    parts["quality"] = quality / invested if live else 0.0
    start = market.total
    parts["cost_penalty"] = settings.cost_penalty_factor * costs / start if start > 0 else 0.0
    weighted = (
        settings.allocation_weight * parts["allocation_fit"]
        + settings.diversification_weight * parts["diversification"]
        + settings.quality_weight * parts["quality"]
    )
    return weighted / settings.weight_sum - parts["cost_penalty"], parts


def _trade(market: Market, step: Step) -> tuple[float, float]:
    """The signed cash flow of one step (before costs) and its cost."""
    side, symbol, quantity = step
    value = market.value(symbol, quantity)
    return (value if side == "sell" else -value), market.fixed + market.percent * value


def simulate(
    context: Context | Market, steps: list[Step], settings: Settings | None = None
) -> Outcome:
    """Walk `steps` in order: the first rule broken (infeasible), else the end state's figures."""
    market = context if isinstance(context, Market) else market_of(context)
    chosen = settings or preset_settings()
    holdings = dict(market.held)
    cash, costs, required, generated = market.cash, 0.0, 0.0, 0.0
    seen: set[str] = set()
    for number, step in enumerate(steps, start=1):
        side, symbol, quantity = step
        problem = step_problem(market, chosen, step)
        if problem is None and symbol in seen:
            problem = f"{symbol} is named twice"
        flow, cost = _trade(market, step) if problem is None else (0.0, 0.0)
        cash += flow - cost
        if problem is None and cash < 0:
            problem = f"cash {cash:.2f} below zero"
        if problem is not None:
            broken = f"step {number} ({side} {symbol}): {problem}"
            return Outcome(False, broken, -math.inf, costs, cash, required, generated, {})
        seen.add(symbol)
        holdings[symbol] = holdings.get(symbol, 0.0) + (quantity if side == "buy" else -quantity)
        costs += cost
        required += -flow + cost if side == "buy" else 0.0
        generated += flow - cost if side == "sell" else 0.0
    score, parts = state_score(market, holdings, cash, costs, chosen)
    return Outcome(True, "", score, costs, cash, required, generated, parts)


def _lots(amount: float, lot: int) -> float:
    """`amount` units rounded to the nearest whole lot."""
    return float(lot * math.floor(amount / lot + 0.5))


def _target_gaps(market: Market, symbol: str) -> list[float]:
    """Base-currency amounts that move `symbol`'s own, country and industry group to target."""
    start = market.total
    gaps: list[float] = []
    for name, weights in market.targets.items():
        group = market.labels[name][symbol]
        if group not in weights:
            continue
        members = [s for s in market.symbols if market.labels[name][s] == group]
        held = math.fsum(market.value(s, market.held.get(s, 0.0)) for s in members)
        if held < weights[group] * start:
            gaps.append(weights[group] * start - held)
    return gaps


def options_of(market: Market, settings: Settings, symbol: str) -> list[Step]:
    """The broad action space of one symbol, deduplicated, each step rule-abiding alone."""
    if math.isnan(market.price[symbol]) or market.rate[symbol] is None:
        return []
    lot, held = market.lot[symbol], market.held.get(symbol, 0.0)
    steps: list[Step] = []
    if held > 0:
        steps += [("sell", symbol, _lots(held * share, lot)) for share in (0.25, 0.5)]
        steps.append(("sell", symbol, held))
    unit = market.value(symbol, 1.0)
    amounts = _target_gaps(market, symbol)
    amounts += [market.cash * share for share in (0.25, 0.5, 1.0)]
    amounts += [market.total * share for share in (0.05, 0.1)]
    steps += [("buy", symbol, _lots(amount / unit, lot)) for amount in amounts]
    unique = list(dict.fromkeys(s for s in steps if s[2] > 0))
    return [s for s in unique if step_problem(market, settings, s) is None]


@dataclass(frozen=True)
class Space:
    """The broad action space as per-symbol option tables (option 0: no trade)."""

    market: Market
    settings: Settings
    options: tuple[tuple[Step, ...], ...]  # per optioned symbol, without the no-trade option
    column: IntArray  # each optioned symbol's index in market.symbols
    move: FloatArray  # (symbols, options + 1): signed value change in base
    cost: FloatArray  # (symbols, options + 1)
    radix: IntArray
    base_values: FloatArray  # held value per market symbol before trading
    members: dict[str, tuple[FloatArray, FloatArray]]  # set -> (groups x symbols, targets)

    @property
    def size(self) -> int:
        """How many option combinations there are (the empty plan included)."""
        return int(np.prod(self.radix, dtype=np.int64))

    def steps(self, digits: IntArray) -> list[Step]:
        """The plan of one combination: sells first, then buys, in symbol order."""
        chosen = [self.options[i][int(d) - 1] for i, d in enumerate(digits) if d > 0]
        return [s for s in chosen if s[0] == "sell"] + [s for s in chosen if s[0] == "buy"]


def _membership(market: Market, name: str) -> tuple[FloatArray, FloatArray]:
    """A target set as a (groups x symbols) 0/1 matrix and its targets."""
    groups = sorted(market.targets[name])
    labels = [market.labels[name][s] for s in market.symbols]
    matrix = np.array([[float(label == g) for label in labels] for g in groups])
    return matrix, np.array([market.targets[name][g] for g in groups])


def broad_space(context: Context | Market, settings: Settings | None = None) -> Space:
    """Build the option tables of every symbol that has at least one broad option."""
    market = context if isinstance(context, Market) else market_of(context)
    chosen = settings or preset_settings()
    per_symbol = [(i, options_of(market, chosen, s)) for i, s in enumerate(market.symbols)]
    per_symbol = [(i, o) for i, o in per_symbol if o]
    width = 1 + max((len(o) for _, o in per_symbol), default=0)
    move = np.zeros((len(per_symbol), width))
    cost = np.zeros((len(per_symbol), width))
    for row, (_, options) in enumerate(per_symbol):
        for k, (side, symbol, quantity) in enumerate(options, start=1):
            value = market.value(symbol, quantity)
            move[row, k] = value if side == "buy" else -value
            cost[row, k] = market.fixed + market.percent * value
    return Space(
        market=market,
        settings=chosen,
        options=tuple(tuple(o) for _, o in per_symbol),
        column=np.array([i for i, _ in per_symbol], dtype=np.int64),
        move=move,
        cost=cost,
        radix=np.array([1 + len(o) for _, o in per_symbol], dtype=np.int64),
        base_values=np.array([market.value(s, market.held.get(s, 0.0)) for s in market.symbols]),
        members={name: _membership(market, name) for name in market.targets},
    )


def _end_values(space: Space, digits: IntArray) -> tuple[FloatArray, FloatArray]:
    """Every symbol's value (symbols x batch) and the total costs, per combination."""
    values = np.repeat(space.base_values[:, None], digits.shape[0], axis=1)
    costs = np.zeros(digits.shape[0])
    for row, column in enumerate(space.column.tolist()):
        values[column] += space.move[row, digits[:, row]]
        costs += space.cost[row, digits[:, row]]
    return values, costs


def score_digits(space: Space, digits: IntArray) -> FloatArray:
    """The documented score of each row of a (batch, symbols) digit matrix, in a few array
    operations; -inf where the cash ends below zero (sells run first, so it never dips)."""
    market, settings = space.market, space.settings
    batch = digits.shape[0]
    values, costs = _end_values(space, digits)
    invested = values.sum(axis=0)
    cash = market.cash - (invested - space.base_values.sum()) - costs
    total = invested + cash
    share = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    fits = [
        1.0 - 0.5 * np.abs(m @ values * share - t[:, None]).sum(axis=0)
        for m, t in space.members.values()
    ]
    allocation = np.mean(fits, axis=0) if fits else np.ones(batch)
    live = invested > _INVESTED_EPSILON * np.maximum(total, 0.0)
    safe = np.where(live, invested, 1.0)
    diversification = np.where(live, 1.0 - (values * values).sum(axis=0) / (safe * safe), 0.0)
    quality_row = np.array([market.quality[s] for s in market.symbols])
    quality = np.where(live, quality_row @ values / safe, 0.0)
    start = market.total
    penalty = settings.cost_penalty_factor * costs / start if start > 0 else np.zeros(batch)
    scores: FloatArray = (
        settings.allocation_weight * allocation
        + settings.diversification_weight * diversification
        + settings.quality_weight * quality
    ) / settings.weight_sum - penalty
    scores[cash < 0] = -np.inf
    return scores


def digits_of(space: Space, index: IntArray) -> IntArray:
    """Mixed-radix digits (batch, symbols) of combination numbers."""
    strides = np.concatenate(([1], np.cumprod(space.radix[:-1]))).astype(np.int64)
    result: IntArray = (index[:, None] // strides[None, :]) % space.radix[None, :]
    return result


def broad_best(
    context: Context | Market, max_depth: int = 5, settings: Settings | None = None
) -> tuple[float, list[Step]]:
    """The best plan of at most `max_depth` trades, one option a symbol, sells first."""
    space = broad_space(context, settings)
    best_score, best_digits = -math.inf, np.zeros(len(space.radix), dtype=np.int64)
    for start in range(0, space.size, _CHUNK):
        digits = digits_of(space, np.arange(start, min(space.size, start + _CHUNK), dtype=np.int64))
        scores = score_digits(space, digits)
        scores[(digits > 0).sum(axis=1) > max_depth] = -np.inf
        top = int(np.argmax(scores))
        if scores[top] > best_score:
            best_score, best_digits = float(scores[top]), digits[top]
    return best_score, space.steps(best_digits)
