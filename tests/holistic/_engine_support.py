"""What the holistic engine tests share: test modules, registries, configurations and
contexts (hypothesis strategies)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic import (
    HolisticEngine,
    ModuleRegistry,
    parse_config,
)
from planforge.holistic._events import EventHub
from planforge.holistic.modules import (
    Action,
    ActionSequence,
    Filter,
    OpportunityCalculator,
    PatternGenerator,
    SequenceGenerator,
)
from planforge.portfolio.context import PortfolioContext
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings
from planforge.portfolio.generators import CombinatorialGenerator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "portfolio.json"
OBJECTIVE = "Rebalance my portfolio"
DOMAIN = PortfolioDomain()
#: Scores are compared this tightly: the same function scores both sides.
TOLERANCE = 1e-9

# -- modules defined for the tests -------------------------------------------------------------


class ActionSpec(BaseModel):
    """One candidate a test asks the fixed calculator to propose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    side: Literal["buy", "sell"]
    symbol: str
    quantity: float = Field(gt=0)
    priority: float = Field(default=0.5, ge=0.0, le=1.0)


def unit_price(context: PortfolioContext, symbol: str) -> tuple[float, str]:
    """How the domain prices a symbol: a holding at its current price, else its security's."""
    for position in context.positions:
        if position.symbol == symbol:
            return position.current_price, position.currency
    security = context.security(symbol)
    assert security.price is not None
    return security.price, security.currency


def to_action(context: PortfolioContext, spec: ActionSpec) -> Action:
    price, currency = unit_price(context, spec.symbol)
    return Action(
        side=spec.side,
        key=spec.symbol,
        quantity=spec.quantity,
        price=price,
        value=spec.quantity * price * context.fx(currency),
        priority=spec.priority,
        category="fixed",
        currency=currency,
    )


class FixedCalculator(OpportunityCalculator):
    """Proposes exactly the actions its params list, so a test knows the candidate set."""

    name = "fixed"
    version = "1.0.0"
    author = "tests"
    description = "Proposes the actions listed in its params."
    calls: ClassVar[int] = 0

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        actions: tuple[ActionSpec, ...] = ()

    def calculate(self, context: PortfolioContext, params: Any) -> list[Action]:
        type(self).calls += 1
        return [to_action(context, spec) for spec in params.actions]


class ExplodingPattern(PatternGenerator):
    """Always raises: the engine must carry on without it."""

    name = "exploding"
    version = "1.0.0"
    author = "tests"
    description = "Raises on every call."

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        raise RuntimeError("pattern blew up")


class HangingCalculator(OpportunityCalculator):
    """Blocks until the test releases it (long after the engine's timeout)."""

    name = "hanging"
    version = "1.0.0"
    author = "tests"
    description = "Waits for a gate the test opens at teardown."
    gate: ClassVar[threading.Event] = threading.Event()

    def calculate(self, context: Any, params: Any) -> list[Action]:
        type(self).gate.wait(30.0)
        return []


class HangingPattern(PatternGenerator):
    """Blocks until the test releases it, in the middle of its stage's batch."""

    name = "hanging"
    version = "1.0.0"
    author = "tests"
    description = "Waits for a gate the test opens at teardown."
    gate: ClassVar[threading.Event] = threading.Event()

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        type(self).gate.wait(30.0)
        return []


class WitnessPattern(PatternGenerator):
    """Proposes nothing; records that it ran (it sorts after `hanging` in its stage)."""

    name = "witness"
    version = "1.0.0"
    author = "tests"
    description = "Counts its calls."
    calls: ClassVar[list[str]] = []

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        type(self).calls.append(threading.current_thread().name)
        return []


class RejectAllFilter(Filter):
    """Drops every sequence; skipping it must let the sequences through."""

    name = "reject_all"
    version = "1.0.0"
    author = "tests"
    description = "Drops everything."

    def apply(self, context: Any, sequences: Sequence[ActionSequence], params: Any) -> list[Any]:
        return []


class NeedsCombinatorialFilter(Filter):
    """Declares a dependency, so configurations without its generator are refused."""

    name = "needs_combinatorial"
    version = "1.0.0"
    author = "tests"
    description = "Needs the combinatorial generator."
    dependencies = ("sequence_generators.combinatorial",)

    def apply(
        self, context: Any, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        return list(sequences)


FLOOD = 5000


def flood_actions(prefix: str, category: str) -> list[Action]:
    return [
        Action("buy", f"{prefix}{i:05d}", 1.0, 1.0, 1.0, 0.5 + (i % 7) / 100, category)
        for i in range(FLOOD)
    ]


class FloodCalculatorA(OpportunityCalculator):
    """Thousands of candidates of one category."""

    name = "flood_a"
    version = "1.0.0"
    author = "tests"
    description = "Thousands of candidates."

    def calculate(self, context: Any, params: Any) -> list[Action]:
        return flood_actions("A", "flood_a")


class FloodCalculatorB(OpportunityCalculator):
    """Thousands more, of another category."""

    name = "flood_b"
    version = "1.0.0"
    author = "tests"
    description = "Thousands of candidates."

    def calculate(self, context: Any, params: Any) -> list[Action]:
        return flood_actions("B", "flood_b")


class FloodPattern(PatternGenerator):
    """Thousands of distinct sequences; remembers how many candidates it was given."""

    name = "flood_pattern"
    version = "1.0.0"
    author = "tests"
    description = "Thousands of sequences."
    seen: ClassVar[list[dict[str, int]]] = []

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        type(self).seen.append({category: len(items) for category, items in candidates.items()})
        return [(action,) for action in flood_actions("P", "flood_pattern")]


class FloodGenerator(SequenceGenerator):
    """Thousands of distinct sequences; remembers how many candidates it was given."""

    name = "flood_generator"
    version = "1.0.0"
    author = "tests"
    description = "Thousands of sequences."
    seen: ClassVar[list[int]] = []

    def generate(
        self, context: Any, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        type(self).seen.append(len(candidates))
        return [(action,) for action in flood_actions("G", "flood_generator")]


class InventingFilter(Filter):
    """Returns what it got plus thousands of sequences it made up (and duplicates)."""

    name = "inventing"
    version = "1.0.0"
    author = "tests"
    description = "Adds sequences, which a filter may not do."

    def apply(
        self, context: Any, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        invented = [(action,) for action in flood_actions("I", "invented")]
        return [*sequences, *sequences, *invented]


TEST_MODULES = (
    FixedCalculator,
    ExplodingPattern,
    HangingCalculator,
    HangingPattern,
    WitnessPattern,
    RejectAllFilter,
    NeedsCombinatorialFilter,
    FloodCalculatorA,
    FloodCalculatorB,
    FloodPattern,
    FloodGenerator,
    InventingFilter,
)


def fresh_registry() -> ModuleRegistry:
    """The test modules and the built-in combinatorial generator, nothing from sys.path."""
    registry = ModuleRegistry(search_path=[])
    for cls in (*TEST_MODULES, CombinatorialGenerator):
        registry.register(cls)
    return registry


_builtin_registry: ModuleRegistry | None = None


def builtin_registry() -> ModuleRegistry:
    """planforge's own modules (through its entry points) plus the fixed calculator."""
    global _builtin_registry
    if _builtin_registry is None:
        registry = ModuleRegistry()
        registry.register(FixedCalculator)
        _builtin_registry = registry
    return _builtin_registry


# -- configurations and contexts ---------------------------------------------------------------


def config_text(
    planner: Mapping[str, Any],
    modules: Mapping[str, Mapping[str, Mapping[str, Any] | None]],
) -> str:
    """TOML with a [planner] table and `{kind: {name: params or None}}` enabled modules."""
    document: dict[str, Any] = {"planner": dict(planner)}
    for kind, enabled in modules.items():
        document[kind] = {
            name: {"enabled": True, **({"params": dict(params)} if params else {})}
            for name, params in enabled.items()
        }
    return tomli_w.dumps(document)


def fixed_params(specs: Sequence[ActionSpec]) -> dict[str, Any]:
    return {"actions": [spec.model_dump() for spec in specs]}


def build_engine(
    text: str,
    registry: ModuleRegistry | None = None,
    *,
    events: EventHub | None = None,
    domain: PortfolioDomain = DOMAIN,
) -> HolisticEngine:
    registry = registry or fresh_registry()
    config = parse_config(text, registry=registry, domain_settings=PortfolioSettings)
    return HolisticEngine(config, domain, registry=registry, events=events)


SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
COUNTRIES = ("US", "DE", "FR")


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    """A small, valid portfolio: a few securities in two currencies, some held, targets by
    country (and sometimes one by security), costs, and the odd recent trade."""
    count = draw(st.integers(2, len(SYMBOLS)))
    securities: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    for symbol in SYMBOLS[:count]:
        currency = draw(st.sampled_from(("EUR", "USD")))
        price = float(draw(st.integers(5, 400)))
        securities.append(
            {
                "symbol": symbol,
                "country": draw(st.sampled_from(COUNTRIES)),
                "industry": draw(st.sampled_from(("tech", "health", "energy"))),
                "currency": currency,
                "price": price,
                "scores": {"quality": draw(st.sampled_from((0.1, 0.4, 0.6, 0.9)))},
            }
        )
        if draw(st.booleans()):
            positions.append(
                {
                    "symbol": symbol,
                    "quantity": float(draw(st.integers(1, 60))),
                    "average_price": float(draw(st.integers(1, 400))),
                    "current_price": price,
                    "currency": currency,
                    "first_bought": draw(st.sampled_from(("2019-01-02", "2025-06-01"))),
                }
            )
    shares = [draw(st.integers(0, 10)) for _ in COUNTRIES]
    scale = max(sum(shares), 10)
    targets: dict[str, Any] = {
        "by_country": {c: s / scale for c, s in zip(COUNTRIES, shares, strict=True) if s}
    }
    if draw(st.booleans()):
        targets["by_security"] = {SYMBOLS[0]: draw(st.sampled_from((0.05, 0.2, 0.4)))}
    restrictions: dict[str, Any] = {}
    if draw(st.booleans()):
        restrictions["recent_buys"] = {SYMBOLS[1]: "2025-06-20"}
    return {
        "base_currency": "EUR",
        "as_of": "2025-06-30",
        "cash": draw(st.sampled_from((0.0, 50.0, 500.0, 2500.0, 10_000.0))),
        "fx_rates": {"USD": 0.9},
        "positions": positions,
        "securities": securities,
        "targets": targets,
        "restrictions": restrictions,
        "costs": {
            "fixed": draw(st.sampled_from((0.0, 1.0, 5.0))),
            "percent": draw(st.sampled_from((0.0, 0.001, 0.005))),
        },
    }


@st.composite
def candidate_specs(draw: st.DrawFn, raw: Mapping[str, Any], limit: int = 10) -> list[ActionSpec]:
    """Up to `limit` candidates with distinct (side, symbol): sells of holdings (sometimes of
    more than is held) and buys of any security (sometimes more than cash covers)."""
    held = {p["symbol"]: p["quantity"] for p in raw["positions"]}
    pairs = [("sell", s) for s in sorted(held)] + [("buy", s["symbol"]) for s in raw["securities"]]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=limit))
    specs: list[ActionSpec] = []
    for side, symbol in chosen:
        top = int(held[symbol]) + 2 if side == "sell" else 40
        specs.append(
            ActionSpec(
                side=side,
                symbol=symbol,
                quantity=float(draw(st.integers(1, top))),
                priority=draw(st.sampled_from((0.0, 0.2, 0.5, 0.8, 1.0))),
            )
        )
    return specs


def resilience_context() -> dict[str, Any]:
    """AAA is all of the portfolio though the targets want half in Germany: buying BBB helps."""
    return {
        "base_currency": "EUR",
        "as_of": "2025-06-30",
        "cash": 1000.0,
        "positions": [
            {
                "symbol": "AAA",
                "quantity": 10,
                "average_price": 80,
                "current_price": 100,
                "first_bought": "2020-01-02",
            }
        ],
        "securities": [
            {"symbol": "AAA", "country": "US", "price": 100, "scores": {"q": 0.5}},
            {"symbol": "BBB", "country": "DE", "price": 50, "scores": {"q": 0.8}},
            {"symbol": "CCC", "country": "FR", "price": 25, "scores": {"q": 0.8}},
        ],
        "targets": {"by_country": {"US": 0.4, "DE": 0.3, "FR": 0.3}},
    }


RESILIENCE_SPECS = (
    ActionSpec(side="buy", symbol="BBB", quantity=10, priority=0.8),
    ActionSpec(side="sell", symbol="AAA", quantity=3, priority=0.6),
)
