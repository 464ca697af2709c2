"""The holistic portfolio planner as users meet it: found by the factory through planforge's
own entry point, selected for rebalancing, planning the sample portfolio with every preset,
configured from the context, and clear about a bad context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planforge.contract import Plan
from planforge.factory import PlannerFactory
from planforge.holistic import HolisticEngine, default_registry, parse_config
from planforge.holistic.errors import ConfigError
from planforge.portfolio.context import load_context, parse_context
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings
from planforge.portfolio.errors import ContextError
from planforge.portfolio.planner import PRESETS, HolisticPortfolioPlanner, preset_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "portfolio.json"
OBJECTIVE = "Rebalance my portfolio"
TARGET = "planforge.portfolio.planner:HolisticPortfolioPlanner"
METRICS = ("current_score", "end_state_score", "improvement", "cash_required", "cash_generated")


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def planner() -> HolisticPortfolioPlanner:
    """One planner for the file: its engines are cached by configuration content."""
    return HolisticPortfolioPlanner()


def steps_of(plan: Plan) -> list[tuple[str, str, float]]:
    return [
        (step.action, str(step.params["symbol"]), float(str(step.params["quantity"])))
        for step in plan.steps
    ]


def check_plan(plan: Plan, *, max_steps: int | None = None) -> None:
    """A real plan: numbered steps, every metric, consistent money and scores."""
    assert plan.planner.name == "holistic"
    assert plan.steps, f"the sample portfolio should get trades; warnings: {plan.warnings}"
    assert [step.id for step in plan.steps] == [str(n) for n in range(1, len(plan.steps) + 1)]
    for key in (*METRICS, "feasible"):
        assert key in plan.metrics, f"metric {key} missing"
    metrics = plan.metrics
    assert metrics["feasible"] == 1.0
    assert metrics["improvement"] == metrics["end_state_score"] - metrics["current_score"]
    assert metrics["improvement"] > 0
    assert plan.score == metrics["end_state_score"]
    buys = [s for s in plan.steps if s.action == "buy"]
    sells = [s for s in plan.steps if s.action == "sell"]
    assert len(buys) + len(sells) == len(plan.steps)
    spent = sum(float(str(s.params["value_base"])) + float(str(s.params["cost"])) for s in buys)
    raised = sum(float(str(s.params["value_base"])) - float(str(s.params["cost"])) for s in sells)
    assert metrics["cash_required"] == pytest.approx(spent, abs=1e-4)
    assert metrics["cash_generated"] == pytest.approx(raised, abs=1e-4)
    assert metrics["cash_before"] + raised - spent >= -1e-6
    for step in plan.steps:
        assert step.description, "every step has a one-line narrative"
        assert "\n" not in step.description
    if max_steps is not None:
        assert len(plan.steps) <= max_steps


# -- discovery and selection through the factory ---------------------------------------------


def test_factory_finds_holistic_through_planforges_own_entry_point() -> None:
    factory = PlannerFactory()
    try:
        specs = {spec.name: spec for spec in factory.discover()}
    finally:
        factory.close()
    assert "holistic" in specs
    spec = specs["holistic"]
    assert spec.source == "entry_point"
    assert spec.metadata_from == "ast"
    assert spec.origin == "planforge"
    assert spec.target == TARGET
    assert spec.path is not None
    assert Path(spec.path).resolve() == (ROOT / "src/planforge/portfolio/planner.py").resolve()
    # what was read from the source is what the class declares
    declared = HolisticPortfolioPlanner.spec()
    for field in ("version", "capabilities", "tier", "production_ready", "reliability_score"):
        assert getattr(spec, field) == getattr(declared, field), field
    assert sorted(spec.keywords) == sorted(declared.keywords)


def test_only_planforges_planners_allowed_selects_holistic_for_rebalancing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOWED_PLANNERS", "holistic")
    factory = PlannerFactory()
    try:
        assert factory.select_best_planner_name(OBJECTIVE) == "holistic"
        assert factory.batch_select_best_planners(OBJECTIVE, n=5) == ["holistic"]
    finally:
        factory.close()


def test_holistic_ranks_above_every_other_installed_rebalancer() -> None:
    """The example plugins (threshold_rebalance) may be installed too: holistic, the gold
    reference planner with the same capabilities, must still win the rebalancing request."""
    factory = PlannerFactory()
    try:
        selection = factory.explain_selection(OBJECTIVE)
        assert factory.select_best_planner_name(OBJECTIVE) == "holistic"
    finally:
        factory.close()
    assert selection.winner == "holistic"
    totals = {score.name: score.total for score in selection.scores}
    for name, total in totals.items():
        if name != "holistic":
            assert totals["holistic"] > total, name


# -- planning ---------------------------------------------------------------------------------


def test_run_plan_through_the_factory_on_the_sample_portfolio() -> None:
    factory = PlannerFactory()
    try:
        plan = factory.run_plan(OBJECTIVE, sample())
        stats = factory.planner_stats("holistic")["holistic"]
    finally:
        factory.close()
    check_plan(plan)
    assert plan.objective == OBJECTIVE
    assert stats["invocations"] == 1
    assert stats["failures"] == 0


def test_presets_are_exactly_the_shipped_three() -> None:
    assert sorted(PRESETS) == ["aggressive", "conservative", "default"]
    with pytest.raises(KeyError, match="shipped presets"):
        preset_text("turbo")


@pytest.mark.parametrize("preset", ["default", "conservative", "aggressive"])
def test_every_shipped_preset_parses_and_plans(
    preset: str, planner: HolisticPortfolioPlanner
) -> None:
    registry = default_registry()
    config = parse_config(preset_text(preset), registry=registry, domain_settings=PortfolioSettings)
    assert config.enabled("opportunity_calculators")
    report = HolisticEngine(config, PortfolioDomain(), registry=registry).dry_run()
    assert report.valid
    assert report.warnings == ()
    assert report.estimated_sequences > 0
    result = planner.run(OBJECTIVE, sample(), config=preset)
    check_plan(result.plan, max_steps=config.planner.max_depth)
    assert result.warnings == (), "no built-in module may fail on the sample portfolio"
    assert result.sequences_evaluated > 0


def test_presets_really_differ() -> None:
    settings = {}
    for preset in PRESETS:
        config = parse_config(
            preset_text(preset), registry=default_registry(), domain_settings=PortfolioSettings
        )
        settings[preset] = config.to_dict()
    assert settings["default"] != settings["conservative"]
    assert settings["default"] != settings["aggressive"]
    assert settings["conservative"] != settings["aggressive"]


# -- choosing the configuration from the context -------------------------------------------


@pytest.mark.parametrize("preset", ["conservative", "aggressive"])
def test_planner_config_in_the_context_selects_a_preset(
    preset: str, planner: HolisticPortfolioPlanner
) -> None:
    chosen = planner.plan(OBJECTIVE, {**sample(), "planner_config": preset})
    explicit = planner.run(OBJECTIVE, sample(), config=preset).plan
    assert steps_of(chosen) == steps_of(explicit)
    assert chosen.metrics == explicit.metrics


def test_without_planner_config_the_default_preset_is_used(
    planner: HolisticPortfolioPlanner,
) -> None:
    implicit = planner.plan(OBJECTIVE, sample())
    explicit = planner.run(OBJECTIVE, sample(), config="default").plan
    assert steps_of(implicit) == steps_of(explicit)
    assert len(implicit.steps) > 1  # so a one-step configuration below is distinguishable


def test_planner_config_in_the_context_selects_a_toml_file(
    tmp_path: Path, planner: HolisticPortfolioPlanner
) -> None:
    text = preset_text("default").replace("max_depth = 5", "max_depth = 1", 1)
    assert "max_depth = 1" in text
    path = tmp_path / "one_step.toml"
    path.write_text(text, encoding="utf-8")
    plan = planner.plan(OBJECTIVE, {**sample(), "planner_config": str(path)})
    check_plan(plan, max_steps=1)
    assert len(plan.steps) == 1
    # TOML text works too, and plans the same
    inline = planner.plan(OBJECTIVE, {**sample(), "planner_config": text})
    assert steps_of(inline) == steps_of(plan)


def test_an_explicit_config_wins_over_the_contexts_planner_config(
    planner: HolisticPortfolioPlanner,
) -> None:
    context = {**sample(), "planner_config": "aggressive"}
    plan = planner.run(OBJECTIVE, context, config="conservative").plan
    assert steps_of(plan) == steps_of(planner.run(OBJECTIVE, sample(), config="conservative").plan)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("turbo", "unknown preset 'turbo'"),
        ("missing.toml", "cannot read the configuration file"),
        ("[planner]\nmax_depth = 99\n", "planner.max_depth"),
    ],
)
def test_a_bad_planner_config_is_a_clear_config_error(
    reference: str,
    expected: str,
    planner: HolisticPortfolioPlanner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("[", r"\[")):
        planner.plan(OBJECTIVE, {**sample(), "planner_config": reference})


def test_planner_config_of_the_wrong_type_is_a_context_error(
    planner: HolisticPortfolioPlanner,
) -> None:
    with pytest.raises(ContextError) as caught:
        planner.plan(OBJECTIVE, {**sample(), "planner_config": 3})
    assert caught.value.field == "planner_config"


# -- bad contexts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c["positions"][0].update(quantity=-5), "positions[0].quantity"),
        (lambda c: c["fx_rates"].pop("USD"), "fx_rates.USD"),
        (lambda c: c["positions"][2].update(symbol="NOPE"), "positions[2].symbol"),
        (lambda c: c.update(cash="lots"), "cash"),
        (lambda c: c.update(surprise=1), "surprise"),
    ],
    ids=["negative-quantity", "missing-fx-rate", "unknown-symbol", "cash-not-number", "extra"],
)
def test_a_bad_context_file_field_is_a_context_error_naming_it(
    change: Any, field: str, tmp_path: Path, planner: HolisticPortfolioPlanner
) -> None:
    data = sample()
    change(data)
    path = tmp_path / "portfolio.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ContextError) as from_file:
        load_context(path)
    assert from_file.value.field == field
    assert field in str(from_file.value)
    assert str(path) in str(from_file.value)
    with pytest.raises(ContextError) as from_plan:
        planner.plan(OBJECTIVE, data)
    assert from_plan.value.field == field


def test_a_bad_context_through_the_factory_is_the_callers_error_not_the_planners() -> None:
    data = sample()
    data["positions"][0]["current_price"] = 0
    factory = PlannerFactory()
    try:
        with pytest.raises(ContextError) as caught:
            factory.run_plan(OBJECTIVE, data, planner="holistic")
        record = factory.describe_planner("holistic")
    finally:
        factory.close()
    assert caught.value.field == "positions[0].current_price"
    assert "positions[0].current_price" in str(caught.value)
    assert record["stats"]["invocations"] == 0
    assert record["breaker"]["calls_in_window"] == 0


def test_the_sample_context_is_valid_and_realistic() -> None:
    context = load_context(EXAMPLE)
    assert context == parse_context(sample())
    assert len(context.securities) >= 24
    assert len({s.currency for s in context.securities}) >= 3
    assert len({s.country for s in context.securities}) >= 3


# -- self test --------------------------------------------------------------------------------


def test_self_test_passes_and_the_factory_records_it() -> None:
    HolisticPortfolioPlanner().self_test()
    factory = PlannerFactory()
    try:
        instance = factory.get_planner("holistic")
        description = factory.describe_planner("holistic")
    finally:
        factory.close()
    assert isinstance(instance, HolisticPortfolioPlanner)
    assert description["self_test_passed"] is True
    assert description["status"] == "active"


def test_an_empty_planner_config_is_an_error_not_an_empty_plan() -> None:
    from planforge.holistic.errors import ConfigError
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    with pytest.raises(ConfigError, match="empty configuration"):
        HolisticPortfolioPlanner().load_config("  ")


def test_equal_configurations_share_one_engine_and_the_parsed_texts_stay_bounded() -> None:
    from planforge.portfolio import planner as planner_module

    planner = HolisticPortfolioPlanner()
    base = preset_text("default")
    first = planner.engine(base)
    kept = planner_module._PARSED_CACHE_SIZE
    for n in range(kept + 4):  # the same configuration in more texts than are kept
        assert planner.engine(f"{base}\n# copy {n}\n") is first
    assert len(planner._parsed_digests) == len(planner._parsed) == kept
    assert planner.engine(base) is first  # parsed again after it was dropped
    changed = base.replace("max_depth = 5", "max_depth = 4")
    assert changed != base
    assert planner.engine(changed) is not first


def test_one_planner_planning_from_many_threads_gives_each_the_plan_one_thread_gets() -> None:
    """The kept sizing problems, models, action tables and the guard's batches are shared
    by every thread planning with one planner: none may change another's plan."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.portfolio._optimality import generate_instance

    contexts = [sample(), generate_instance(3), generate_instance(8)]
    planner = HolisticPortfolioPlanner()

    def plans_of(context: dict[str, Any]) -> tuple[float | None, list[tuple[str, str, float]]]:
        plan = planner.run("Rebalance", context).plan
        return plan.score, steps_of(plan)

    alone = [plans_of(context) for context in contexts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(plans_of, contexts * 8))
    assert together == alone * 8
