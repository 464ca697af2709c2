from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic import ModuleRegistry
from planforge.holistic._config import (
    MAX_CONFIG_BYTES,
    EngineSettings,
    HolisticConfig,
    config_digest,
    config_json_schema,
    default_config,
    dump_config,
    estimate_sequences,
    load_config,
    parse_config,
)
from planforge.holistic.errors import ConfigError
from planforge.holistic.modules import (
    Action,
    ActionSequence,
    Filter,
    OpportunityCalculator,
    PatternGenerator,
    SequenceGenerator,
)


class DomainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_cost_fixed: float = Field(2.0, ge=0, description="Fixed cost per trade.")
    base_currency: str = Field("EUR", description="Currency of the scores.")


class ProfitTaking(OpportunityCalculator):
    """Sell part of a windfall."""

    name = "profit_taking"
    description = "Windfall sells"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        windfall_threshold: float = Field(0.3, ge=0)

    def calculate(self, context: Any, params: Any) -> list[Action]:
        return []


class RebalanceBuys(OpportunityCalculator):
    name = "rebalance_buys"


class DirectBuy(PatternGenerator):
    name = "direct_buy"
    dependencies = ("profit_taking",)


class BeamSearch(SequenceGenerator):
    name = "beam_search"
    dependencies = ("opportunity_calculators.rebalance_buys",)

    class Params(BaseModel):
        beam_width: int = 10


class Combinatorial(SequenceGenerator):
    name = "combinatorial"

    class Params(BaseModel):
        max_combinations: int = 50

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        return int(params.max_combinations)

    def generate(
        self, context: Any, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        return []


class Diversity(Filter):
    name = "diversity"

    class Params(BaseModel):
        weight: float = 0.3
        targets: dict[str, float] = {}
        labels: list[str] = []


BOOM = (
    "from pathlib import Path\n"
    "from planforge.holistic.modules import Filter\n"
    "Path(__file__).with_suffix('.imported').write_text('yes')\n"
    "class Boom(Filter):\n"
    "    name = 'boom'\n"
    "raise RuntimeError('cannot start')\n"
)


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    before = set(sys.modules)
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "boom.py").write_text(BOOM)
    yield directory
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.fixture
def registry(plugins: Path) -> ModuleRegistry:
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins])
    for cls in (ProfitTaking, RebalanceBuys, DirectBuy, BeamSearch, Combinatorial, Diversity):
        registry.register(cls)
    return registry


def parse(text: str, registry: ModuleRegistry) -> HolisticConfig:
    return parse_config(text, registry=registry, domain_settings=DomainSettings, source="t.toml")


FULL = """
"$schema" = "./planforge-config.schema.json"

[planner]
max_depth = 3
beam_width = 4
base_currency = "USD"

[sequence_generators.combinatorial]
enabled = true
[sequence_generators.combinatorial.params]
max_combinations = 7

[opportunity_calculators.rebalance_buys]
enabled = true

[opportunity_calculators.profit_taking]
enabled = true
[opportunity_calculators.profit_taking.params]
windfall_threshold = 0.5

[sequence_generators.beam_search]
enabled = false
[sequence_generators.beam_search.params]
beam_width = "not validated while disabled"

[filters.boom]
enabled = false
"""


def test_a_full_configuration_is_parsed_into_typed_models(
    registry: ModuleRegistry, plugins: Path
) -> None:
    config = parse(FULL, registry)
    assert (config.planner.max_depth, config.planner.beam_width) == (3, 4)
    assert config.planner.max_sequences == 20_000  # defaults fill the rest
    assert isinstance(config.domain, DomainSettings)
    assert config.domain.base_currency == "USD"
    calculators = config.enabled("opportunity_calculators")
    assert [name for name, _ in calculators] == ["profit_taking", "rebalance_buys"]  # by name
    assert calculators[0][1] == ProfitTaking.Params(windfall_threshold=0.5)
    assert config.enabled_keys() == [
        "opportunity_calculators.profit_taking",
        "opportunity_calculators.rebalance_buys",
        "sequence_generators.combinatorial",
    ]
    assert config.enabled_classes("sequence_generators")[0][1] is Combinatorial
    beam = config.module("sequence_generators", "beam_search")
    assert beam is not None
    assert not beam.enabled
    assert beam.params is None
    assert dict(beam.raw_params) == {"beam_width": "not validated while disabled"}
    assert config.enabled("pattern_generators") == []
    assert not (plugins / "boom.imported").exists()  # disabled: never imported


def test_enabling_a_module_imports_it_and_a_failed_import_names_the_module(
    registry: ModuleRegistry, plugins: Path
) -> None:
    with pytest.raises(ConfigError) as error:
        parse("[filters.boom]\nenabled = true\n", registry)
    assert error.value.key == "filters.boom"
    assert "RuntimeError: cannot start" in error.value.message
    assert (plugins / "boom.imported").exists()


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[foo]\nx = 1\n", "foo", "foo: unknown table; the valid tables are planner, "),
        ("filters = 3\n", "filters", "filters: must be a table"),
        ('"$schema" = 3\n', "$schema", "must be a string"),
        (
            "[planner]\nmax_dept = 3\n",
            "planner.max_dept",
            "planner.max_dept: unknown key; valid [planner] keys are base_currency, beam_width",
        ),
        (
            "[planner]\nmax_depth = 11\n",
            "planner.max_depth",
            "planner.max_depth: Input should be less than or equal to 10",
        ),
        ("[planner]\nmax_depth = true\n", "planner.max_depth", "valid integer"),
        ("[planner]\nbase_currency = 3\n", "planner.base_currency", "valid string"),
        (
            "[pattern_generators.foo]\nenabled = true\n",
            "pattern_generators.foo",
            "pattern_generators.foo: no such module; known pattern_generators: direct_buy",
        ),
        (
            "[filters.diversity]\nenabled = 'yes'\n",
            "filters.diversity.enabled",
            "must be true or false, got 'yes'",
        ),
        (
            "[filters.diversity]\nweight = 1\n",
            "filters.diversity.weight",
            "a module table holds only 'enabled' and 'params'",
        ),
        ("[filters]\ndiversity = 3\n", "filters.diversity", "must be a table"),
        ("[filters.diversity]\nparams = 3\n", "filters.diversity.params", "must be a table"),
        (
            "[filters.diversity]\nenabled = true\n[filters.diversity.params]\nweight = 'heavy'\n",
            "filters.diversity.params.weight",
            "filters.diversity.params.weight: Input should be a valid number",
        ),
        (
            "[filters.diversity]\nenabled = true\n[filters.diversity.params]\nwieght = 1\n",
            "filters.diversity.params.wieght",
            "unknown parameter; valid parameters: labels, targets, weight",
        ),
        (
            "[opportunity_calculators.rebalance_buys]\nenabled = true\n"
            "[opportunity_calculators.rebalance_buys.params]\nx = 1\n",
            "opportunity_calculators.rebalance_buys.params.x",
            "this module takes no parameters",
        ),
        (
            "[sequence_generators.beam_search]\nenabled = true\n",
            "sequence_generators.beam_search",
            "sequence_generators.beam_search needs opportunity_calculators.rebalance_buys "
            "enabled; enable it with [opportunity_calculators.rebalance_buys] enabled = true",
        ),
        (
            "[pattern_generators.direct_buy]\nenabled = true\n"
            "[opportunity_calculators.profit_taking]\nenabled = false\n",
            "pattern_generators.direct_buy",
            "needs opportunity_calculators.profit_taking enabled",
        ),
    ],
)
def test_every_mistake_is_one_config_error_naming_the_key(
    registry: ModuleRegistry, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse(text, registry)
    assert error.value.key == key
    assert fragment in error.value.message
    assert error.value.message.startswith("t.toml: ")


def test_a_met_bare_dependency_is_accepted(registry: ModuleRegistry) -> None:
    text = (
        "[pattern_generators.direct_buy]\nenabled = true\n"
        "[opportunity_calculators.profit_taking]\nenabled = true\n"
    )
    assert parse(text, registry).enabled_keys()[-1] == "pattern_generators.direct_buy"


def test_bad_toml_reports_line_and_column(registry: ModuleRegistry) -> None:
    with pytest.raises(ConfigError) as error:
        parse("[planner]\nmax_depth = = 3\n", registry)
    assert error.value.key is None
    assert (error.value.line, error.value.column) == (2, 13)
    assert "not valid TOML" in error.value.message


@pytest.mark.parametrize(
    "document",
    ["a = " + "[" * 3000 + "]" * 3000, "b = " + "{b = " * 1000 + "1" + "}" * 1000],
    ids=["arrays", "inline-tables"],
)
def test_a_deeply_nested_document_is_a_config_error_naming_the_limit(
    registry: ModuleRegistry, document: str
) -> None:
    with pytest.raises(ConfigError, match="PLANFORGE_MAX_NESTING"):
        parse(document, registry)


def test_a_non_finite_number_is_a_config_error_naming_the_key(registry: ModuleRegistry) -> None:
    with pytest.raises(ConfigError) as error:
        parse("[planner]\ncost_penalty_factor = inf\n", registry)
    assert error.value.key == "planner.cost_penalty_factor"
    assert "finite" in error.value.message


def test_an_oversized_document_is_refused_before_parsing(
    registry: ModuleRegistry, tmp_path: Path
) -> None:
    huge = "# " + "x" * MAX_CONFIG_BYTES + "\n"
    with pytest.raises(ConfigError, match="more than the 262144 allowed"):
        parse(huge, registry)
    path = tmp_path / "huge.toml"
    path.write_text(huge)
    with pytest.raises(ConfigError, match="more than"):
        load_config(path, registry=registry, domain_settings=DomainSettings)


def test_load_config_reads_real_files_and_reports_unreadable_ones(
    registry: ModuleRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "planner.toml"
    path.write_text(FULL)
    config = load_config(path, registry=registry, domain_settings=DomainSettings)
    assert config.source == str(path)
    assert config.planner.max_depth == 3
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "missing.toml", registry=registry, domain_settings=DomainSettings)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[planner]\nbase_currency = "\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin, registry=registry, domain_settings=DomainSettings)


def test_module_timeout_zero_means_inline() -> None:
    assert EngineSettings(module_timeout_s=0).module_timeout_s is None
    assert EngineSettings().module_timeout_s == 2.0


def test_dump_round_trips_to_the_same_digest(registry: ModuleRegistry) -> None:
    text = (
        "[planner]\nmodule_timeout_s = 0\nbase_currency = 'quote \" and \\\\ and\\nnewline é'\n"
        "[filters.diversity]\nenabled = true\n[filters.diversity.params]\n"
        "weight = 1e-5\ntargets = { 'North America' = 0.5, EU = 0.25 }\nlabels = ['a', 'b']\n"
        "[opportunity_calculators.profit_taking]\nenabled = true\n"
    )
    config = parse(text, registry)
    dumped = dump_config(config)
    again = parse(dumped, registry)
    assert config_digest(again) == config_digest(config)
    assert again.planner.module_timeout_s is None
    assert again.domain == config.domain
    assert dump_config(again) == dumped  # deterministic
    assert tomllib.loads(dumped)["filters"]["diversity"]["params"]["targets"] == {
        "EU": 0.25,
        "North America": 0.5,
    }
    assert "[opportunity_calculators.profit_taking.params]\nwindfall_threshold = 0.3" in dumped
    assert dumped.index("[opportunity_calculators") < dumped.index("[filters")


def test_digest_ignores_file_order_and_explicit_defaults_but_not_values(
    registry: ModuleRegistry,
) -> None:
    one = parse(
        "[opportunity_calculators.rebalance_buys]\nenabled = true\n"
        "[opportunity_calculators.profit_taking]\nenabled = true\n",
        registry,
    )
    two = parse(
        "[planner]\nmax_depth = 5\n"
        "[opportunity_calculators.profit_taking]\nenabled = true\n"
        "[opportunity_calculators.profit_taking.params]\nwindfall_threshold = 0.3\n"
        "[opportunity_calculators.rebalance_buys]\nenabled = true\n",
        registry,
    )
    three = parse(
        "[opportunity_calculators.rebalance_buys]\nenabled = true\n"
        "[opportunity_calculators.profit_taking]\nenabled = true\n"
        "[opportunity_calculators.profit_taking.params]\nwindfall_threshold = 0.4\n",
        registry,
    )
    assert config_digest(one) == config_digest(two)
    assert config_digest(one) != config_digest(three)


def test_the_json_schema_describes_every_registered_module(registry: ModuleRegistry) -> None:
    schema = config_json_schema(registry, DomainSettings)
    json.dumps(schema)  # serialisable
    assert schema["additionalProperties"] is False
    planner = schema["properties"]["planner"]
    assert planner["additionalProperties"] is False
    assert planner["properties"]["max_depth"]["maximum"] == 10
    assert planner["properties"]["base_currency"]["description"] == "Currency of the scores."
    assert all(p.get("description") for p in planner["properties"].values())
    diversity = schema["properties"]["filters"]["properties"]["diversity"]
    assert diversity["additionalProperties"] is False
    assert diversity["properties"]["enabled"]["type"] == "boolean"
    params = diversity["properties"]["params"]
    assert params["additionalProperties"] is False
    assert set(params["properties"]) == {"weight", "targets", "labels"}
    boom = schema["properties"]["filters"]["properties"]["boom"]["properties"]["params"]
    assert "cannot start" in boom["description"]
    calculators = schema["properties"]["opportunity_calculators"]["properties"]
    assert calculators["profit_taking"]["description"] == "Windfall sells"
    assert set(schema["properties"]) == {
        "$schema",
        "planner",
        "opportunity_calculators",
        "pattern_generators",
        "sequence_generators",
        "filters",
    }


def test_estimate_is_an_upper_bound_from_generators_and_bounds(registry: ModuleRegistry) -> None:
    assert estimate_sequences(default_config(DomainSettings), 10) == 0
    base = (
        "[opportunity_calculators.profit_taking]\nenabled = true\n"
        "[opportunity_calculators.rebalance_buys]\nenabled = true\n"
        "[pattern_generators.direct_buy]\nenabled = true\n"
    )
    # 2 calculators x min(10, 5 per category) = 10 candidates; patterns add at most 200
    assert estimate_sequences(parse(base, registry), 10) == 200
    beam = base + "[sequence_generators.beam_search]\nenabled = true\n"
    # ordered selections of up to 2 of 10 candidates: 10 + 90
    assert estimate_sequences(parse("[planner]\nmax_depth = 2\n" + beam, registry), 10) == 300
    combinatorial = base + "[sequence_generators.combinatorial]\nenabled = true\n"
    assert estimate_sequences(parse(combinatorial, registry), 10) == 250  # declared bound 50
    capped = "[planner]\nmax_sequences = 120\n" + beam
    assert estimate_sequences(parse(capped, registry), 10) == 120


def test_defaults_enable_nothing() -> None:
    config = default_config(DomainSettings)
    assert config.enabled_keys() == []
    assert config.planner == EngineSettings()
    assert "[planner]\nmax_depth = 5\n" in dump_config(config)


def test_disabled_modules_keep_toml_dates_through_dump_and_digest(
    registry: ModuleRegistry,
) -> None:
    text = (
        "[filters.diversity]\nenabled = false\n"
        "[filters.diversity.params]\nsince = 2024-01-02\nat = 2024-01-02T03:04:05Z\n"
    )
    config = parse(text, registry)
    dumped = dump_config(config)
    assert "since = 2024-01-02\n" in dumped
    assert "at = 2024-01-02 03:04:05+00:00\n" in dumped
    assert config_digest(parse(dumped, registry)) == config_digest(config)
