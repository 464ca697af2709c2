"""The holistic engine survives bad modules (raising, hanging, skipped by their breaker),
reports a dry run, and refuses a bad configuration naming the key."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from planforge.contract import Plan
from planforge.holistic import (
    config_digest,
    dump_config,
    parse_config,
)
from planforge.holistic._events import MODULE_FAILED, MODULE_SKIPPED, EventHub
from planforge.holistic.errors import ConfigError
from planforge.portfolio.domain import PortfolioSettings
from tests.holistic._engine_support import (
    OBJECTIVE,
    RESILIENCE_SPECS,
    FixedCalculator,
    HangingCalculator,
    HangingPattern,
    WitnessPattern,
    build_engine,
    config_text,
    fixed_params,
    fresh_registry,
    resilience_context,
)

# -- 3. resilience -----------------------------------------------------------------------------


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


def test_a_pattern_generator_hanging_in_its_stage_times_out_and_the_stage_goes_on(
    reference_steps: list[tuple[str, str]],
) -> None:
    hub, gate = EventHub(), threading.Event()
    HangingPattern.gate, WitnessPattern.calls = gate, []
    text = resilience_config(
        {"pattern_generators.hanging": {}, "pattern_generators.witness": {}}, module_timeout_s=0.5
    )
    engine = build_engine(text, events=hub)
    try:
        started = time.monotonic()
        result = engine.run(OBJECTIVE, resilience_context())
        elapsed = time.monotonic() - started
        assert engine.guard.stuck_workers == 1  # the hung module's worker, until it returns
    finally:
        gate.set()
    assert "pattern_generators.hanging timed out after 0.5 s" in result.plan.warnings
    assert steps_of(result.plan) == reference_steps
    assert len(WitnessPattern.calls) == 1  # the module after it ran, once
    assert elapsed < 5.0
    failed = events_of(hub, MODULE_FAILED, "pattern_generators.hanging")
    assert [event["error_type"] for event in failed] == ["timeout"]
    wait_until = time.monotonic() + 10.0
    while engine.guard.stuck_workers and time.monotonic() < wait_until:
        time.sleep(0.01)
    assert engine.guard.stuck_workers == 0
    time.sleep(0.05)
    assert len(WitnessPattern.calls) == 1  # the freed worker did not run it again
    engine.guard.close()


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
