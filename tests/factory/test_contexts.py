"""Context kinds: the registry read from entry points, admission's rule, and the factory's use
of both (selection never picks a planner for a context it cannot read, and a context the
planner rejects never counts against it)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from planforge.errors import InvalidContext, PlannerError, PlannerSelectionError
from planforge.factory import PlannerFactory
from planforge.factory._contexts import ContextKinds, decide_context_kind
from planforge.settings import load_settings
from tests.factory._dists import add_dist

KINDS_EP = "[planforge.contexts]\n"
WEIGHTS_VALIDATOR = """
from planforge.errors import InvalidContext

CALLS = []


def validate_weights(context):
    CALLS.append(dict(context))
    weights = context.get("weights")
    if not isinstance(weights, dict):
        raise InvalidContext("weights", "an object of weights is required")
    for key in sorted(set(context) - {"weights"}):
        raise InvalidContext(key, "is not part of a weights context")
    for symbol, weight in sorted(weights.items()):
        if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise InvalidContext(f"weights.{symbol}", "must be a number in [0, 1]")
"""


def portfolio_validator(context: Mapping[str, Any]) -> None:
    """A small stand-in kind registered from code: a list of positions with prices > 0."""
    positions = context.get("positions")
    if not isinstance(positions, list):
        raise InvalidContext("positions", "a list of positions is required")
    for index, position in enumerate(positions):
        if not position.get("current_price", 0) > 0:
            raise InvalidContext(f"positions[{index}].current_price", "must be greater than 0")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    add_dist(
        root,
        "acme-kinds",
        KINDS_EP + "weights = acme_kinds:validate_weights\n",
        modules={"acme_kinds.py": WEIGHTS_VALIDATOR},
    )
    yield root
    sys.modules.pop("acme_kinds", None)
    if str(root) in sys.path:
        sys.path.remove(str(root))


# --- the registry --------------------------------------------------------------------------


def test_kinds_are_read_without_importing_and_imported_once_when_used(site: Path) -> None:
    kinds = ContextKinds([str(site)])
    assert kinds.names() == ("weights",)
    assert kinds.target("weights") == "acme_kinds:validate_weights"
    assert kinds.target("portfolio") is None
    assert "acme_kinds" not in sys.modules
    assert kinds.validate("weights", {"weights": {"A": 0.5}})
    module = sys.modules["acme_kinds"]
    with pytest.raises(InvalidContext) as caught:
        kinds.validate("weights", {"weights": {"A": 2}})
    assert (caught.value.field, caught.value.kind) == ("weights.A", "weights")
    assert sys.modules["acme_kinds"] is module  # kept, not imported again
    assert len(module.CALLS) == 2
    assert not kinds.validate("portfolio", {})  # no validator: nothing to say


def test_bad_entry_points_are_reported_and_the_first_distribution_wins(tmp_path: Path) -> None:
    root = tmp_path / "site"
    add_dist(root, "b-kinds", KINDS_EP + "weights = b_kinds:check\nany = b_kinds:check\n")
    add_dist(root, "a-kinds", KINDS_EP + "weights = a_kinds:check\nbad-name = a_kinds:f\n")
    add_dist(root, "c-kinds", KINDS_EP + "plain = c_kinds\n")
    kinds = ContextKinds([str(root)])
    assert kinds.names() == ("weights",)
    assert kinds.target("weights") == "a_kinds:check"
    problems = "\n".join(kinds.problems())
    assert "'any' cannot name a context kind" in problems
    assert "'bad-name' cannot name a context kind" in problems
    assert "already registered by a-kinds" in problems
    assert "module:function" in problems


def test_a_validator_that_cannot_be_loaded_is_an_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "site"
    add_dist(root, "gone", KINDS_EP + "ghost = no_such_module_here:check\n")
    kinds = ContextKinds([str(root)])
    with pytest.raises(PlannerError, match="no_such_module_here:check, from gone"):
        kinds.validate("ghost", {})
    (root / "no_such_module_here.py").write_text("def check(context):\n    pass\n")
    with pytest.raises(PlannerError, match="cannot be loaded"):  # remembered, not retried
        kinds.validate("ghost", {})
    kinds.refresh()  # after a fix: read and imported again
    try:
        assert kinds.validate("ghost", {})
    finally:
        sys.modules.pop("no_such_module_here", None)
        sys.path.remove(str(root))


def test_code_registration_wins_and_refuses_bad_names(site: Path) -> None:
    kinds = ContextKinds([str(site)])
    kinds.register("weights", lambda context: None)
    assert kinds.target("weights") == "code"
    assert kinds.validate("weights", {"anything": 1})
    for name in ("any", "", "two words"):
        with pytest.raises(PlannerError, match="cannot name a context kind"):
            kinds.register(name, lambda context: None)


# --- admission's rule ----------------------------------------------------------------------


def registry() -> ContextKinds:
    kinds = ContextKinds([])
    kinds.register("portfolio", portfolio_validator)
    kinds.register("empty_ok", lambda context: None)  # accepts anything, an ambiguity maker

    def hotspots(context: Mapping[str, Any]) -> None:
        if set(context) != {"hotspots"}:
            raise InvalidContext("hotspots", "required, and nothing else")

    kinds.register("hotspots", hotspots)
    return kinds


PORTFOLIO = {"positions": [{"current_price": 10.0}]}
BAD_PORTFOLIO = {"positions": [{"current_price": -5}]}


def decide(context: Mapping[str, Any], **options: Any) -> str:
    options.setdefault("declared", ("hotspots", "portfolio"))
    return decide_context_kind(registry(), context, **options)


def test_the_one_kind_that_accepts_the_context_is_its_kind() -> None:
    assert decide(PORTFOLIO) == "portfolio"
    assert decide({"hotspots": {"a": 1}}) == "hotspots"


def test_several_accepting_kinds_are_settled_by_the_intended_planner() -> None:
    declared = ("empty_ok", "portfolio")
    assert decide(PORTFOLIO, declared=declared, intended_kind=lambda: "portfolio") == "portfolio"
    assert decide(PORTFOLIO, declared=declared, intended_kind=lambda: "empty_ok") == "empty_ok"
    # the intended planner reads any mapping: the first accepting kind, in sorted order
    assert decide(PORTFOLIO, declared=declared, intended_kind=lambda: "any") == "empty_ok"


def test_a_context_the_intended_planners_kind_rejects_is_that_rejection() -> None:
    with pytest.raises(InvalidContext) as caught:
        decide(BAD_PORTFOLIO, intended_kind=lambda: "portfolio")
    assert (caught.value.field, caught.value.kind) == ("positions[0].current_price", "portfolio")


def test_a_context_no_kind_accepts_is_of_no_known_kind() -> None:
    assert decide({"n": 2}, intended_kind=lambda: "any") == "any"
    assert decide({"n": 2}, intended_kind=lambda: "weights") == "any"  # no validator to ask
    assert decide({"n": 2}, declared=()) == "any"


def test_a_named_planner_validates_as_its_kind() -> None:
    assert decide(PORTFOLIO, planner_kind="portfolio") == "portfolio"
    with pytest.raises(InvalidContext, match=r"positions\[0\]\.current_price"):
        decide(BAD_PORTFOLIO, planner_kind="portfolio")
    assert decide(BAD_PORTFOLIO, planner_kind="any") == "any"  # it checks for itself
    assert decide(BAD_PORTFOLIO, planner_kind="weights") == "weights"  # no validator


def test_an_explicit_kind_is_validated_and_an_unknown_one_lists_the_known() -> None:
    assert decide(PORTFOLIO, context_kind="portfolio") == "portfolio"
    with pytest.raises(InvalidContext):
        decide(BAD_PORTFOLIO, context_kind="portfolio")
    assert decide(BAD_PORTFOLIO, context_kind="any") == "any"
    with pytest.raises(PlannerSelectionError) as caught:
        decide(PORTFOLIO, context_kind="weights")
    assert "Known kinds: any, empty_ok, hotspots, portfolio" in caught.value.message
    with pytest.raises(PlannerSelectionError, match="reads 'hotspots' contexts, not"):
        decide(PORTFOLIO, context_kind="portfolio", planner_kind="hotspots")
    with pytest.raises(PlannerSelectionError, match="context_kind must be a context kind"):
        decide(PORTFOLIO, context_kind="not a kind")


def test_the_reserved_planner_config_key_is_never_validated() -> None:
    with_config = {**PORTFOLIO, "planner_config": "conservative"}
    assert decide(with_config) == "portfolio"
    assert decide({"hotspots": {}, "planner_config": "x"}) == "hotspots"


def test_a_context_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidContext, match="expected an object, got list"):
        decide([1, 2])  # type: ignore[arg-type]


def test_a_broken_validator_is_a_fault_of_the_validator_not_of_the_caller() -> None:
    kinds = registry()

    def broken(context: Mapping[str, Any]) -> None:
        raise KeyError("oops")

    kinds.register("broken", broken)
    with pytest.raises(PlannerError, match="must raise InvalidContext") as caught:
        decide_context_kind(kinds, {}, declared=("broken",), context_kind="broken")
    assert not isinstance(caught.value, InvalidContext)
    # while inferring, a broken kind is one that cannot be told: the others still can
    assert decide_context_kind(kinds, PORTFOLIO, declared=("broken", "portfolio")) == "portfolio"


# --- the factory ---------------------------------------------------------------------------

PLANNERS = {
    "weights_rebalancer": """
        from planforge.contract import Planner

        class WeightsRebalancer(Planner):
            name = "weights_rebalancer"
            capabilities = ("rebalance", "portfolio")
            keywords = ("rebalance", "portfolio")
            tier = "vip"
            production_ready = True
            reliability_score = 0.95
            context_kind = "weights"

            def plan(self, objective, context):
                return self.new_plan(objective, [], score=float(len(context["weights"])))
    """,
    "holdings": """
        import pathlib
        from planforge.contract import Planner
        from planforge.errors import InvalidContext

        class Holdings(Planner):
            name = "holdings"
            capabilities = ("rebalance", "portfolio")
            keywords = ("rebalance", "portfolio")
            tier = "stable"
            production_ready = True
            reliability_score = 0.8
            context_kind = "portfolio"

            def plan(self, objective, context):
                marker = context.get("marker")
                if marker:
                    pathlib.Path(marker).write_text("planned")
                if context.get("deep_check_fails"):
                    raise InvalidContext("deep_check_fails", "the planner's own check failed")
                return self.new_plan(objective, [], score=1.0)
    """,
    "anything": """
        from planforge.contract import Planner

        class Anything(Planner):
            name = "anything"
            capabilities = ("general",)
            tier = "beta"
            reliability_score = 0.5

            def plan(self, objective, context):
                return self.new_plan(objective, [], score=0.1)
    """,
}


@pytest.fixture
def factory(tmp_path: Path, site: Path) -> Iterator[PlannerFactory]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for module, source in PLANNERS.items():
        (plugins / f"{module}.py").write_text(textwrap.dedent(source))
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=10.0)
    with PlannerFactory(
        settings,
        search_path=[str(site)],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    ) as built:
        built.register_context_kind("portfolio", portfolio_validator)
        yield built
    for module in PLANNERS:
        sys.modules.pop(module, None)


def test_selection_never_picks_a_planner_for_a_context_it_cannot_read(
    factory: PlannerFactory,
) -> None:
    objective = "Rebalance my portfolio"
    assert factory.select_best_planner_name(objective) == "weights_rebalancer"  # kinds ignored
    plan = factory.run_plan(objective, PORTFOLIO)
    assert plan.planner.name == "holdings"
    assert factory.run_plan(objective, {"weights": {"A": 0.5}}).planner.name == (
        "weights_rebalancer"
    )
    # no kind reads {"n": 2}; the planner selection would pick reads weights: its rejection
    with pytest.raises(InvalidContext) as caught:
        factory.run_plan(objective, {"n": 2})
    assert (caught.value.field, caught.value.kind) == ("weights", "weights")
    # said to be of no particular kind, it goes to a planner that reads any mapping
    assert factory.run_plan(objective, {"n": 2}, context_kind="any").planner.name == "anything"
    selection = factory.explain_selection(objective, context_kind="portfolio")
    assert selection.winner == "holdings"
    assert {e.name: e.reason for e in selection.exclusions}["weights_rebalancer"] == (
        "reads 'weights' contexts, not 'portfolio'"
    )


def test_a_bad_context_is_refused_before_any_planner_runs(
    factory: PlannerFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    bad = {**BAD_PORTFOLIO, "marker": str(marker)}
    with pytest.raises(InvalidContext) as caught:
        factory.run_plan("Rebalance my portfolio", bad, planner="holdings")
    assert caught.value.field == "positions[0].current_price"
    with pytest.raises(InvalidContext):  # inferred: the intended planner reads portfolios
        factory.run_plan("Rebalance my portfolio", bad, context_kind="portfolio")
    assert not marker.exists()
    assert factory.planner_stats("holdings")["holdings"]["invocations"] == 0


def test_a_context_the_planner_itself_rejects_never_counts_against_it(
    factory: PlannerFactory,
) -> None:
    context = {**PORTFOLIO, "deep_check_fails": True}
    before = factory.describe_planner("holdings")
    for _ in range(3 * factory.settings.breaker_min_calls):
        with pytest.raises(InvalidContext, match="deep_check_fails"):
            factory.run_plan("Rebalance my portfolio", context, planner="holdings")
    after = factory.describe_planner("holdings")
    assert after["breaker"]["state"] == "closed"
    assert after["breaker"]["calls_in_window"] == 0
    assert after["reliability"] == before["reliability"]
    assert (after["stats"]["invocations"], after["stats"]["failures"]) == (0, 0)
    # and it is still the planner a good portfolio gets
    assert factory.run_plan("Rebalance my portfolio", PORTFOLIO).planner.name == "holdings"


def test_describe_says_which_kind_a_planner_reads_and_who_validates_it(
    factory: PlannerFactory,
) -> None:
    holdings = factory.describe_planner("holdings")
    weights = factory.describe_planner("weights_rebalancer")
    anything = factory.describe_planner("anything")
    assert (holdings["context_kind"], holdings["context_validator"]) == ("portfolio", "code")
    assert (weights["context_kind"], weights["context_validator"]) == (
        "weights",
        "acme_kinds:validate_weights",
    )
    assert (anything["context_kind"], anything["context_validator"]) == ("any", None)


def test_when_no_kind_reads_the_context_the_objective_says_which_planner_was_meant(
    factory: PlannerFactory,
) -> None:
    # weights_rebalancer (vip) wins selection for any objective; but "holdings" names the
    # portfolio planner, so the bad portfolio is reported as a portfolio, field and all
    objective = "check all my holdings today, now"
    assert factory.select_best_planner_name(objective) == "weights_rebalancer"
    with pytest.raises(InvalidContext) as caught:
        factory.run_plan(objective, BAD_PORTFOLIO)
    assert (caught.value.field, caught.value.kind) == ("positions[0].current_price", "portfolio")
    # with no word of the objective known to any planner, the selection order decides
    with pytest.raises(InvalidContext) as caught:
        factory.run_plan("zzz", BAD_PORTFOLIO)
    assert caught.value.kind == "weights"


def test_a_computed_context_kind_is_read_in_the_sandbox(tmp_path: Path) -> None:
    plugins = tmp_path / "computed"
    plugins.mkdir()
    (plugins / "computed_kind.py").write_text(
        "from planforge.contract import Planner\n\n"
        "KIND = 'week' + 'ly'\n\n\n"
        "class Computed(Planner):\n"
        "    name = 'computed'\n"
        "    context_kind = KIND\n\n"
        "    def plan(self, objective, context):\n"
        "        return self.new_plan(objective, [])\n"
    )
    settings = load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=10.0)
    with PlannerFactory(
        settings, search_path=[], cache_dir=tmp_path / "cache", state_dir=tmp_path / "state"
    ) as factory:
        (spec,) = factory.discover()
    assert (spec.name, spec.metadata_from, spec.context_kind) == ("computed", "sandbox", "weekly")
    assert "computed_kind" not in sys.modules  # read in the sandbox, never imported here


def test_diagnostics_list_the_context_kinds_and_their_problems(
    factory: PlannerFactory, site: Path
) -> None:
    discovery = factory.diagnostics_json()["discovery"]
    assert discovery["context_kinds"] == {
        "portfolio": "code",
        "weights": "acme_kinds:validate_weights",
    }
    assert discovery["context_kind_problems"] == []
    add_dist(site, "zz-broken", KINDS_EP + "any = zz_broken:check\n")
    factory.discover(force=True)  # a forced rediscovery reads the kinds again
    problems = factory.diagnostics_json()["discovery"]["context_kind_problems"]
    assert len(problems) == 1
    assert "'any' cannot name a context kind" in problems[0]


def test_the_async_entry_points_take_the_context_kind(factory: PlannerFactory) -> None:
    import asyncio

    async def scenario() -> tuple[str, str | None, str]:
        name = await factory.aselect_best_planner_name(
            "Rebalance my portfolio", context_kind="portfolio"
        )
        selection = await factory.aexplain_selection(
            "Rebalance my portfolio", context_kind="weights"
        )
        plan = await factory.arun_plan("Rebalance my portfolio", PORTFOLIO)
        return name, selection.winner, plan.planner.name

    assert asyncio.run(scenario()) == ("holdings", "weights_rebalancer", "holdings")


def test_the_module_level_api_takes_the_context_kind(factory: PlannerFactory) -> None:
    import planforge

    previous = planforge.set_default_factory(factory)
    try:
        assert planforge.admit_context("Rebalance my portfolio", PORTFOLIO) == "portfolio"
        assert (
            planforge.select_best_planner_name("Rebalance my portfolio", context_kind="portfolio")
            == "holdings"
        )
        assert planforge.run_plan("Rebalance", {"weights": {"A": 1}}).planner.name == (
            "weights_rebalancer"
        )
        with pytest.raises(planforge.InvalidContext):
            planforge.run_plan("Rebalance my portfolio", BAD_PORTFOLIO)
    finally:
        planforge.set_default_factory(previous)
