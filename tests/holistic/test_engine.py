"""The holistic engine end to end on the portfolio domain: it finds the best plan, never
breaks the money rules, survives bad modules, validates before running, bounds every stage
and plans the same way every time."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from planforge.contract import Plan
from planforge.holistic import (
    EngineResult,
    HolisticEngine,
    ModuleRegistry,
    config_digest,
    dump_config,
    parse_config,
)
from planforge.holistic._events import MODULE_FAILED, MODULE_SKIPPED, EventHub
from planforge.holistic.errors import ConfigError
from planforge.holistic.modules import (
    Action,
    ActionSequence,
    Filter,
    OpportunityCalculator,
    PatternGenerator,
    SequenceGenerator,
)
from planforge.portfolio.context import PortfolioContext, parse_context
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings
from planforge.portfolio.generators import CombinatorialGenerator
from planforge.portfolio.planner import HolisticPortfolioPlanner, preset_text

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


# -- 1. exhaustive check -----------------------------------------------------------------------


def brute_force(
    context: PortfolioContext,
    actions: Sequence[Action],
    depth: int,
    chosen: PortfolioSettings,
) -> tuple[float, list[ActionSequence]]:
    """The best score over EVERY ordered selection of distinct candidates of length 0..depth
    (the empty one is the portfolio as it is), and the feasible sequences reaching it."""
    sequences: list[ActionSequence] = [()]
    for length in range(1, depth + 1):
        sequences.extend(itertools.permutations(actions, length))
    evaluation = DOMAIN.evaluate(context, sequences, chosen)
    scores = [
        float(score) for score, ok in zip(evaluation.scores, evaluation.feasible, strict=True) if ok
    ]
    assert evaluation.feasible[0], "the empty sequence is always feasible"
    best = max(scores)
    winners = [
        sequence
        for sequence, score, ok in zip(
            sequences, evaluation.scores, evaluation.feasible, strict=True
        )
        if ok and abs(float(score) - best) <= TOLERANCE
    ]
    return best, winners


def plan_sequence(plan: Plan, actions: Sequence[Action]) -> ActionSequence:
    """The candidate actions a plan's steps execute, in order."""
    by_identity = {action.identity(): action for action in actions}
    return tuple(by_identity[(step.action, str(step.params["symbol"]))] for step in plan.steps)


def exhaustive_config(specs: Sequence[ActionSpec], depth: int) -> str:
    return config_text(
        {
            "max_depth": depth,
            "priority_threshold": 0.0,
            "max_opportunities_per_category": 10,
            "module_timeout_s": 0,
        },
        {
            "opportunity_calculators": {"fixed": fixed_params(specs)},
            "sequence_generators": {"combinatorial": None},  # the depth is [planner]'s
        },
    )


def check_against_brute_force(
    raw: Mapping[str, Any], specs: Sequence[ActionSpec], depth: int
) -> EngineResult:
    engine = build_engine(exhaustive_config(specs, depth))
    result = engine.run(OBJECTIVE, raw)
    context = parse_context(raw)
    actions = [to_action(context, spec) for spec in specs]
    chosen = engine.config.domain
    assert isinstance(chosen, PortfolioSettings)
    best, winners = brute_force(context, actions, depth, chosen)
    metrics = result.plan.metrics
    assert metrics["end_state_score"] == pytest.approx(best, abs=TOLERANCE)
    assert result.plan.score == pytest.approx(best, abs=TOLERANCE)
    if result.plan.steps:
        sequence = plan_sequence(result.plan, actions)
        replayed = DOMAIN.simulate(context, sequence, chosen)
        assert replayed.feasible
        assert replayed.end_state_score == pytest.approx(best, abs=TOLERANCE)
        assert len(sequence) <= depth
        assert set(sequence) in [set(w) for w in winners]
    else:
        assert metrics["end_state_score"] == metrics["current_score"]
        assert best <= metrics["current_score"] + TOLERANCE
    return result


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_engine_best_equals_brute_force_over_every_sequence(data: st.DataObject) -> None:
    raw = data.draw(contexts(), label="context")
    specs = data.draw(candidate_specs(raw), label="candidates")
    depth = data.draw(st.integers(1, 3), label="depth")
    check_against_brute_force(raw, specs, depth)


def test_brute_force_check_on_a_known_instance_finds_a_real_plan() -> None:
    """A hand-made case where the best plan needs a sell to fund two buys, so the exhaustive
    comparison above is known to cover non-empty, multi-step plans too."""
    raw = resilience_context()
    raw["cash"] = 0.0
    specs = [
        ActionSpec(side="sell", symbol="AAA", quantity=5, priority=0.1),
        ActionSpec(side="buy", symbol="BBB", quantity=4, priority=0.9),
        ActionSpec(side="buy", symbol="CCC", quantity=4, priority=0.9),
    ]
    result = check_against_brute_force(raw, specs, depth=3)
    steps = [(s.action, s.params["symbol"]) for s in result.plan.steps]
    assert steps[0] == ("sell", "AAA")
    assert sorted(steps[1:]) == [("buy", "BBB"), ("buy", "CCC")]


# -- 2. properties of every plan ---------------------------------------------------------------


def property_config(specs: Sequence[ActionSpec]) -> str:
    """The default preset (every built-in module), shallower and inline, plus the fixed
    calculator feeding candidates that may be unaffordable or oversized."""
    document = tomllib.loads(preset_text("default"))
    document["planner"].update(
        {"max_depth": 3, "module_timeout_s": 0, "max_opportunities_per_category": 10}
    )
    document["opportunity_calculators"]["fixed"] = {
        "enabled": True,
        "params": fixed_params(specs),
    }
    return tomli_w.dumps(document)


def as_float(value: Any) -> float:
    assert isinstance(value, int | float), f"expected a number, got {value!r}"
    return float(value)


def check_plan_properties(raw: Mapping[str, Any], plan: Plan) -> None:
    context = parse_context(raw)
    metrics = plan.metrics
    held = {p.symbol: p.quantity for p in context.positions}
    cash = metrics["cash_before"]
    assert cash == pytest.approx(context.cash)
    required = generated = 0.0
    symbols: list[str] = []
    for number, step in enumerate(plan.steps, start=1):
        assert step.id == str(number)
        params = step.params
        symbol = str(params["symbol"])
        value = as_float(params["value_base"])
        cost = as_float(params["cost"])
        quantity = as_float(params["quantity"])
        price, currency = unit_price(context, symbol)
        assert params["currency"] == currency
        assert value == pytest.approx(quantity * price * context.fx(currency), rel=1e-6)
        assert cost == pytest.approx(context.costs.fixed + context.costs.percent * value, abs=1e-5)
        if step.action == "sell":
            assert quantity <= held[symbol] + 1e-9, f"step {step.id} sells more than is held"
            cash += value - cost
            generated += value - cost
        else:
            assert step.action == "buy"
            cash -= value + cost
            required += value + cost
        assert cash >= -1e-6, f"step {step.id} spends cash the portfolio does not have"
        symbols.append(symbol)
    assert len(symbols) == len(set(symbols)), "a symbol is traded twice in one plan"
    bought = {str(s.params["symbol"]) for s in plan.steps if s.action == "buy"}
    sold = {str(s.params["symbol"]) for s in plan.steps if s.action == "sell"}
    assert not bought & sold
    assert metrics["cash_required"] == pytest.approx(required, abs=1e-4)
    assert metrics["cash_generated"] == pytest.approx(generated, abs=1e-4)
    assert metrics["cash_after"] == pytest.approx(cash, abs=1e-4)
    assert metrics["feasible"] == 1.0
    current, end = metrics["current_score"], metrics["end_state_score"]
    assert end >= current
    assert metrics["improvement"] == end - current
    assert plan.score == end
    if plan.steps:
        assert metrics["improvement"] > 0


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_plan_respects_cash_holdings_and_never_loses_score(data: st.DataObject) -> None:
    raw = data.draw(contexts(), label="context")
    specs = data.draw(candidate_specs(raw), label="candidates")
    registry = builtin_registry()
    engine = build_engine(property_config(specs), registry)
    result = engine.run(OBJECTIVE, raw)
    check_plan_properties(raw, result.plan)
    assert result.simulation.feasible
    settings_used = engine.config.domain
    empty = DOMAIN.simulate(parse_context(raw), (), settings_used)
    assert result.plan.metrics["current_score"] == pytest.approx(empty.end_state_score, abs=1e-12)


def test_properties_hold_on_the_sample_portfolio_with_every_preset() -> None:
    raw = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for preset in ("default", "conservative", "aggressive"):
        engine = build_engine(preset_text(preset), builtin_registry())
        try:
            result = engine.run(OBJECTIVE, raw)
        finally:
            engine.guard.close()
        assert result.plan.steps, f"{preset}: the sample portfolio should get a plan"
        check_plan_properties(raw, result.plan)


# -- 3. resilience -----------------------------------------------------------------------------


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


def resilience_config(extra: Mapping[str, Mapping[str, Any]], **planner: Any) -> str:
    modules: dict[str, dict[str, Mapping[str, Any] | None]] = {
        "opportunity_calculators": {"fixed": fixed_params(RESILIENCE_SPECS)},
        "sequence_generators": {"combinatorial": None},  # the depth is [planner]'s
    }
    for key, params in extra.items():
        kind, _, name = key.partition(".")
        modules.setdefault(kind, {})[name] = dict(params) or None
    return config_text(
        {"max_depth": 2, "priority_threshold": 0.0, "module_timeout_s": 0, **planner}, modules
    )


def steps_of(plan: Plan) -> list[tuple[str, str]]:
    return [(step.action, str(step.params["symbol"])) for step in plan.steps]


@pytest.fixture
def reference_steps() -> list[tuple[str, str]]:
    """The plan the healthy modules make on their own."""
    result = build_engine(resilience_config({})).run(OBJECTIVE, resilience_context())
    assert result.plan.steps, "the healthy configuration must plan something"
    assert not result.warnings
    return steps_of(result.plan)


def events_of(hub: EventHub, kind: str, module: str) -> list[Mapping[str, Any]]:
    return [e.payload for e in hub.recent() if e.type == kind and e.payload["module"] == module]


def test_a_raising_module_leaves_a_plan_with_its_warning(
    reference_steps: list[tuple[str, str]],
) -> None:
    hub = EventHub()
    engine = build_engine(resilience_config({"pattern_generators.exploding": {}}), events=hub)
    result = engine.run(OBJECTIVE, resilience_context())
    warning = "pattern_generators.exploding failed: RuntimeError: pattern blew up"
    assert result.warnings == (warning,)
    assert warning in result.plan.warnings
    assert steps_of(result.plan) == reference_steps
    failed = events_of(hub, MODULE_FAILED, "pattern_generators.exploding")
    assert len(failed) == 1
    assert failed[0]["error_type"] == "RuntimeError"
    report = engine.perf.report()
    assert "pattern_generators.exploding.generate: 1 call" in report
    assert "1 failed" in report
    assert "opportunity_calculators.fixed.calculate" in report
    assert "sequence_generators.combinatorial.generate" in report


def test_repeated_failures_open_the_breaker_and_the_module_is_skipped(
    reference_steps: list[tuple[str, str]],
) -> None:
    hub = EventHub()
    text = resilience_config(
        {"pattern_generators.exploding": {}}, breaker_window=2, breaker_min_calls=2
    )
    engine = build_engine(text, events=hub)
    for _ in range(2):
        assert "failed" in engine.run(OBJECTIVE, resilience_context()).warnings[0]
    result = engine.run(OBJECTIVE, resilience_context())
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        "pattern_generators.exploding skipped: circuit breaker open (retry in"
    )
    assert steps_of(result.plan) == reference_steps
    assert len(events_of(hub, MODULE_FAILED, "pattern_generators.exploding")) == 2
    skipped = events_of(hub, MODULE_SKIPPED, "pattern_generators.exploding")
    assert len(skipped) == 1
    assert skipped[0]["state"] == "open"


@pytest.fixture
def hanging_gate() -> Iterator[threading.Event]:
    gate = threading.Event()
    HangingCalculator.gate = gate
    yield gate
    gate.set()


def test_a_hanging_module_times_out_and_leaves_a_plan(
    hanging_gate: threading.Event, reference_steps: list[tuple[str, str]]
) -> None:
    hub = EventHub()
    text = resilience_config({"opportunity_calculators.hanging": {}}, module_timeout_s=0.5)
    engine = build_engine(text, events=hub)
    try:
        result = engine.run(OBJECTIVE, resilience_context())
    finally:
        hanging_gate.set()
        engine.guard.close()
    warning = "opportunity_calculators.hanging timed out after 0.5 s"
    assert warning in result.warnings
    assert warning in result.plan.warnings
    assert steps_of(result.plan) == reference_steps
    failed = events_of(hub, MODULE_FAILED, "opportunity_calculators.hanging")
    assert len(failed) == 1
    assert failed[0]["error_type"] == "timeout"
    report = engine.perf.report()
    assert "opportunity_calculators.hanging.calculate: 1 call" in report
    assert "1 failed" in report


def test_a_module_whose_breaker_is_open_is_skipped_and_the_plan_still_comes_out(
    reference_steps: list[tuple[str, str]],
) -> None:
    hub = EventHub()
    engine = build_engine(resilience_config({"filters.reject_all": {}}), events=hub)
    # while it runs, the filter drops every sequence: no plan
    blocked = engine.run(OBJECTIVE, resilience_context())
    assert blocked.plan.steps == []
    assert "no candidate sequence survived" in blocked.warnings[0]
    engine.guard.force_open("filters.reject_all")
    result = engine.run(OBJECTIVE, resilience_context())
    assert result.warnings == (
        "filters.reject_all skipped: circuit breaker forced open "
        "(reset it to call the module again)",
    )
    assert result.warnings[0] in result.plan.warnings
    assert steps_of(result.plan) == reference_steps  # skipped: sequences pass untouched
    skipped = events_of(hub, MODULE_SKIPPED, "filters.reject_all")
    assert len(skipped) == 1
    assert skipped[0]["state"] == "forced_open"
    report = engine.perf.report()
    assert "filters.reject_all.apply: 1 call" in report  # only the first run called it
    assert "opportunity_calculators.fixed.calculate" in report


# -- 4. dry run and bad configurations ---------------------------------------------------------


def test_dry_run_reports_modules_and_an_estimate_and_runs_nothing() -> None:
    hub = EventHub()
    FixedCalculator.calls = 0
    text = resilience_config({"filters.needs_combinatorial": {}})
    engine = build_engine(text, events=hub)
    report = engine.dry_run()
    assert report.valid
    assert report.modules_loaded == (
        "opportunity_calculators.fixed",
        "sequence_generators.combinatorial",
        "filters.needs_combinatorial",
    )
    assert report.estimated_sequences > 0
    assert report.warnings == ()
    assert report.errors == ()
    assert json.loads(json.dumps(report.to_dict()))["modules_loaded"] == list(report.modules_loaded)
    assert FixedCalculator.calls == 0
    assert hub.last_sequence == 0
    assert engine.perf.report() == ""
    # the estimate bounds what a real run then evaluates
    result = engine.run(OBJECTIVE, resilience_context())
    assert 0 < result.sequences_evaluated <= report.estimated_sequences


def test_dry_run_warns_when_no_calculator_or_generator_is_enabled() -> None:
    no_calculator = build_engine(
        config_text({}, {"sequence_generators": {"combinatorial": None}})
    ).dry_run()
    assert no_calculator.valid
    assert any("no opportunity calculator" in w for w in no_calculator.warnings)
    no_generator = build_engine(
        config_text({}, {"opportunity_calculators": {"fixed": None}})
    ).dry_run()
    assert any("no pattern or sequence generator" in w for w in no_generator.warnings)
    assert no_generator.estimated_sequences == 0


FIXED_ON = "[opportunity_calculators.fixed]\nenabled = true\n"
COMBINATORIAL_ON = "[sequence_generators.combinatorial]\nenabled = true\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(
            FIXED_ON + "[opportunity_calculators.nope]\nenabled = true\n",
            "opportunity_calculators.nope",
            id="unknown-module",
        ),
        pytest.param(
            FIXED_ON + COMBINATORIAL_ON + "[sequence_generators.combinatorial.params]\nbogus = 1\n",
            "sequence_generators.combinatorial.params.bogus",
            id="unknown-param",
        ),
        pytest.param(
            FIXED_ON
            + COMBINATORIAL_ON
            + '[sequence_generators.combinatorial.params]\nmax_candidates = "deep"\n',
            "sequence_generators.combinatorial.params.max_candidates",
            id="wrong-param-type",
        ),
        pytest.param(
            FIXED_ON
            + COMBINATORIAL_ON
            + "[sequence_generators.combinatorial.params]\nmax_depth = 3\n",
            "sequence_generators.combinatorial.params.max_depth",
            id="engine-setting-as-module-param",
        ),
        pytest.param(
            '[planner]\nmax_depth = "three"\n' + FIXED_ON, "planner.max_depth", id="wrong-type"
        ),
        pytest.param("[planner]\nspeed = 11\n" + FIXED_ON, "planner.speed", id="unknown-key"),
        pytest.param(
            FIXED_ON + '[filters.reject_all]\nenabled = "yes"\n',
            "filters.reject_all.enabled",
            id="enabled-not-bool",
        ),
        pytest.param(
            FIXED_ON + "[filters.needs_combinatorial]\nenabled = true\n",
            "filters.needs_combinatorial",
            id="unmet-dependency",
        ),
    ],
)
def test_bad_configuration_is_a_config_error_naming_the_key(text: str, key: str) -> None:
    FixedCalculator.calls = 0
    registry = fresh_registry()
    with pytest.raises(ConfigError) as caught:
        parse_config(text, registry=registry, domain_settings=PortfolioSettings)
    assert caught.value.key == key
    assert key in str(caught.value)
    assert FixedCalculator.calls == 0


def test_max_depth_is_one_setting_of_the_engine() -> None:
    """A module's own max_depth is refused with the fix; a module whose params declare it
    receives [planner].max_depth, and writing the configuration back keeps it in one place."""
    with pytest.raises(ConfigError, match=r"set it once as \[planner\] max_depth = 4"):
        parse_config(
            FIXED_ON + COMBINATORIAL_ON + "[sequence_generators.combinatorial.params]\n"
            "max_depth = 4\n",
            registry=fresh_registry(),
            domain_settings=PortfolioSettings,
        )
    config = parse_config(
        "[planner]\nmax_depth = 2\n" + FIXED_ON + COMBINATORIAL_ON,
        registry=fresh_registry(),
        domain_settings=PortfolioSettings,
    )
    ((_, params),) = config.enabled("sequence_generators")
    assert params.max_depth == 2  # type: ignore[attr-defined]
    text = dump_config(config)
    assert text.count("\nmax_depth = ") == 1
    again = parse_config(text, registry=fresh_registry(), domain_settings=PortfolioSettings)
    assert config_digest(again) == config_digest(config)


def test_unmet_dependency_error_says_what_to_enable() -> None:
    with pytest.raises(ConfigError, match=r"sequence_generators\.combinatorial"):
        parse_config(
            "[filters.needs_combinatorial]\nenabled = true\n",
            registry=fresh_registry(),
            domain_settings=PortfolioSettings,
        )


# -- 5. every stage is bounded -----------------------------------------------------------------


class CountingDomain(PortfolioDomain):
    """The portfolio domain, counting the sequences it is asked to score."""

    def __init__(self) -> None:
        self.scored = 0

    def evaluate(
        self, context: Any, sequences: Sequence[ActionSequence], settings: Any = None
    ) -> Any:
        self.scored += len(sequences)
        return super().evaluate(context, sequences, settings)


BOUNDS = {
    "max_opportunities_per_category": 3,
    "max_candidates": 4,
    "max_patterns_per_generator": 7,
    "max_sequences": 11,
    "priority_threshold": 0.0,
    "module_timeout_s": 0,
}


def flood_run(extra: Sequence[str]) -> tuple[EngineResult, CountingDomain, HolisticEngine]:
    FloodPattern.seen = []
    FloodGenerator.seen = []
    modules: dict[str, dict[str, Mapping[str, Any] | None]] = {
        "opportunity_calculators": {"flood_a": None, "flood_b": None}
    }
    for key in extra:
        kind, _, name = key.partition(".")
        modules.setdefault(kind, {})[name] = None
    domain = CountingDomain()
    engine = build_engine(config_text(BOUNDS, modules), domain=domain)
    return engine.run(OBJECTIVE, resilience_context()), domain, engine


def test_calculators_and_candidates_are_bounded() -> None:
    result, _, _ = flood_run(
        ["pattern_generators.flood_pattern", "sequence_generators.flood_generator"]
    )
    assert FloodPattern.seen == [{"flood_a": 3, "flood_b": 3}]
    assert FloodGenerator.seen == [4]
    assert result.sequences_generated == BOUNDS["max_sequences"]


def test_a_pattern_generator_is_bounded() -> None:
    result, domain, _ = flood_run(["pattern_generators.flood_pattern"])
    assert result.sequences_generated == BOUNDS["max_patterns_per_generator"]
    assert result.sequences_evaluated == BOUNDS["max_patterns_per_generator"]
    assert domain.scored <= BOUNDS["max_patterns_per_generator"]


def test_a_sequence_generator_and_the_evaluated_batch_are_bounded() -> None:
    result, domain, engine = flood_run(["sequence_generators.flood_generator", "filters.inventing"])
    assert result.sequences_generated == BOUNDS["max_sequences"]
    assert result.sequences_evaluated <= BOUNDS["max_sequences"]
    assert result.feasible_sequences <= result.sequences_evaluated
    assert domain.scored <= BOUNDS["max_sequences"]
    started = [e.payload for e in engine.events.recent() if e.type == "evaluation_started"]
    assert started == [{"sequences": result.sequences_evaluated}]
    # the sequences are made-up symbols: infeasible, so the plan is empty and says so
    assert result.plan.steps == []
    assert result.plan.warnings


# -- 6. determinism ----------------------------------------------------------------------------


def plan_fingerprint(plan: Plan) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "steps": [step.model_dump(mode="json") for step in plan.steps],
        "metrics": plan.metrics,
        "warnings": plan.warnings,
    }


def test_two_engines_make_the_same_plan() -> None:
    raw = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    plans = []
    for _ in range(2):
        registry = ModuleRegistry()
        config = parse_config(
            preset_text("default"), registry=registry, domain_settings=PortfolioSettings
        )
        engine = HolisticEngine(config, PortfolioDomain(), registry=registry)
        try:
            plans.append(plan_fingerprint(engine.run(OBJECTIVE, raw).plan))
        finally:
            engine.guard.close()
    assert plans[0]["steps"]
    assert plans[0] == plans[1]


_SCRIPT = """
import json, sys
from planforge.portfolio.planner import HolisticPortfolioPlanner
context = json.loads(open(sys.argv[1], encoding="utf-8").read())
plan = HolisticPortfolioPlanner().plan("Rebalance my portfolio", context)
print(json.dumps({
    "plan_id": plan.plan_id,
    "steps": [step.model_dump(mode="json") for step in plan.steps],
    "metrics": plan.metrics,
    "warnings": plan.warnings,
}, sort_keys=True))
"""


def test_fresh_processes_with_different_hash_seeds_make_the_same_plan() -> None:
    children = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, str(EXAMPLE)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
        )
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0]["steps"]
    assert outputs[0] == outputs[1]
    here = plan_fingerprint(
        HolisticPortfolioPlanner().plan(OBJECTIVE, json.loads(EXAMPLE.read_text("utf-8")))
    )
    assert json.loads(json.dumps(here, sort_keys=True)) == outputs[0]
    assert not math.isnan(outputs[0]["metrics"]["end_state_score"])
