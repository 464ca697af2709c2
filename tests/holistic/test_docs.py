from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic import ModuleRegistry, default_registry
from planforge.holistic._config import ENGINE_PARAMS
from planforge.holistic._docs import kind_title, module_docs, param_docs
from planforge.holistic.modules import (
    KINDS,
    Action,
    ActionSequence,
    Filter,
    OpportunityCalculator,
    SequenceGenerator,
)


class Windfall(OpportunityCalculator):
    """Sells part of a windfall.

    Indented detail that must come out dedented.
    """

    name = "windfall"
    version = "2.1.0"
    author = "Docs Team"
    description = "Windfall sells | with a pipe"
    tags = ("sell", "profit")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        threshold: float = Field(0.3, ge=0.0, le=1.0, description="Gain that counts | a lot.")
        mode: Literal["fast", "slow"] = Field("fast", description="How hard to look.")
        limit: int | None = Field(None, gt=0, description="Optional cap.")
        sides: tuple[str, ...] = Field(("sell",), max_length=4, description="Sides.")
        window: int = Field(5, alias="window-days", description="Aliased key.")

    def calculate(self, context: Any, params: Any) -> list[Action]:
        return []


class Walker(SequenceGenerator):
    """Walks the candidates."""

    name = "walker"
    description = "Walks"
    dependencies = ("opportunity_calculators.windfall",)

    def generate(self, context: Any, candidates: Any, params: Any) -> list[ActionSequence]:
        return []


class Tidy(Filter):
    name = "tidy"

    def apply(self, context: Any, sequences: Any, params: Any) -> list[ActionSequence]:
        return list(sequences)


BROKEN = '''
from planforge.holistic.modules import Filter


class Fragile(Filter):
    """Cannot be imported."""

    name = "fragile"
    description = "Breaks on import"

    def apply(self, context, sequences, params):
        return list(sequences)


raise RuntimeError("no config here")
'''


@pytest.fixture
def clean_imports() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _registry(*classes: type[Any], module_dirs: tuple[Path, ...] = ()) -> ModuleRegistry:
    registry = ModuleRegistry(search_path=[], module_dirs=module_dirs)
    for cls in classes:
        registry.register(cls)
    return registry


def _section(text: str, key: str) -> str:
    start = text.index(f"### `{key}`")
    following = text.find("\n### ", start + 1)
    next_kind = text.find("\n## ", start + 1)
    ends = [end for end in (following, next_kind) if end != -1]
    return text[start : min(ends)] if ends else text[start:]


def test_docs_are_deterministic_whatever_the_registration_order() -> None:
    first = module_docs(_registry(Windfall, Walker, Tidy))
    second = module_docs(_registry(Tidy, Walker, Windfall))
    assert first == second
    assert first == module_docs(_registry(Windfall, Walker, Tidy))
    assert first.endswith("\n")
    assert not first.endswith("\n\n")


def test_modules_are_grouped_by_kind_in_pipeline_order() -> None:
    text = module_docs(_registry(Tidy, Walker, Windfall))
    positions = [text.index(f"## {kind_title(kind)} (`{kind}`)") for kind in KINDS]
    assert positions == sorted(positions)
    calculator = text.index("### `opportunity_calculators.windfall` 2.1.0")
    generator = text.index("### `sequence_generators.walker` 1.0.0")
    tidy = text.index("### `filters.tidy` 1.0.0")
    assert positions[0] < calculator < positions[1] < positions[2] < generator
    assert positions[3] < tidy
    patterns = text[positions[1] : positions[2]]
    assert "No module of this kind is registered." in patterns


def test_params_table_has_type_default_bounds_and_description() -> None:
    section = _section(module_docs(_registry(Windfall)), "opportunity_calculators.windfall")
    assert "| name | type | default | bounds | description |" in section
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `threshold` | float | `0.3` | >= 0.0, <= 1.0 | Gain that counts \\| a lot. |",
        '| `mode` | "fast" \\| "slow" | `"fast"` |  | How hard to look. |',
        "| `limit` | int \\| none | `unset` | > 0 | Optional cap. |",
        '| `sides` | tuple[str, ...] | `["sell"]` | length <= 4 | Sides. |',
        "| `window-days` | int | `5` |  | Aliased key. |",
    ]


def test_section_carries_metadata_and_the_dedented_docstring() -> None:
    section = _section(module_docs(_registry(Windfall, Walker)), "sequence_generators.walker")
    assert "| dependencies | `opportunity_calculators.windfall` |" in section
    assert "Walks the candidates." in section
    assert "This module takes no parameters." in section
    windfall = _section(module_docs(_registry(Windfall)), "opportunity_calculators.windfall")
    assert "| author | Docs Team |" in windfall
    assert "| tags | sell, profit |" in windfall
    assert "\nWindfall sells | with a pipe\n" in windfall  # a paragraph: no escaping
    summary = "| `windfall` | 2.1.0 | Windfall sells \\| with a pipe |"
    assert summary in module_docs(_registry(Windfall))  # a table cell: the pipe is escaped
    assert "\nIndented detail that must come out dedented.\n" in windfall


def test_toml_example_parses_to_the_default_params() -> None:
    section = _section(module_docs(_registry(Windfall)), "opportunity_calculators.windfall")
    match = re.search(r"```toml\n(.*?)\n```", section, re.DOTALL)
    assert match is not None
    document = tomllib.loads(match.group(1))
    table = document["opportunity_calculators"]["windfall"]
    assert table["enabled"] is True
    # None has no TOML spelling, so an unset default is left out of the example
    assert table["params"] == {
        "threshold": 0.3,
        "mode": "fast",
        "sides": ["sell"],
        "window-days": 5,
    }
    assert Windfall.parse_params(table["params"]) == Windfall.Params()


def test_a_module_that_cannot_be_imported_is_still_documented(
    tmp_path: Path, clean_imports: None
) -> None:
    (tmp_path / "fragile.py").write_text(BROKEN)
    text = module_docs(_registry(Tidy, module_dirs=(tmp_path,)))
    section = _section(text, "filters.fragile")
    assert "Breaks on import" in section
    assert "Cannot be imported." in section
    assert "Parameters unknown" in section
    assert "RuntimeError: no config here" in section
    assert "| class | `fragile.py:Fragile` (plugin directory) |" in section
    assert str(tmp_path) not in text  # no absolute paths: the text is the same everywhere


def test_param_docs_lists_fields_in_declaration_order() -> None:
    rows = param_docs(Windfall.Params)
    assert [row.name for row in rows] == ["threshold", "mode", "limit", "sides", "window-days"]
    assert rows[0].to_dict() == {
        "name": "threshold",
        "type": "float",
        "default": "0.3",
        "bounds": ">= 0.0, <= 1.0",
        "description": "Gain that counts | a lot.",
    }


def test_every_built_in_module_is_documented() -> None:
    registry = default_registry()
    text = module_docs(registry)
    modules = registry.list()
    assert len(modules) >= 20
    for metadata in modules:
        section = _section(text, f"{metadata.kind}.{metadata.name}")
        assert metadata.description in section
        cls = registry.load(metadata.kind, metadata.name)
        for field_name in cls.Params.model_fields:
            if field_name in ENGINE_PARAMS:  # set once under [planner], never per module
                assert f"| `{field_name}` |" not in section
                assert f"\n{field_name} = " not in section
            else:
                assert f"| `{field_name}` |" in section
    assert "Parameters unknown" not in text
