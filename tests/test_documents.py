"""Nesting bounds and finite numbers for every document planforge reads from outside."""

from __future__ import annotations

import json
import tomllib

import pytest

from planforge import documents
from planforge.documents import find_non_finite, load_json, load_toml
from planforge.errors import DocumentTooDeep, NonFiniteNumber, SettingsError


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_toml_array(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth


@pytest.mark.parametrize("limit", [2, 5, 32])
def test_json_at_the_limit_loads_and_one_level_more_is_refused(limit: int) -> None:
    assert load_json(nested_json(limit), source="body", limit=limit) is not None
    with pytest.raises(DocumentTooDeep, match=f"deeper than the {limit} levels") as info:
        load_json(nested_json(limit + 1), source="body", limit=limit)
    assert info.value.limit == limit
    assert "PLANFORGE_MAX_NESTING" in info.value.message


@pytest.mark.parametrize(
    "document",
    [nested_toml_array(3000), "b = " + "{b = " * 1000 + "1" + "}" * 1000],
)
def test_toml_thousands_deep_is_refused_without_recursing(document: str) -> None:
    with pytest.raises(DocumentTooDeep):
        load_toml(document, source="config")


def test_toml_tables_made_deep_by_dotted_keys_are_refused() -> None:
    dotted = ".".join(["k"] * 100) + " = 1"
    header = "[" + ".".join(["t"] * 100) + "]\nx = 1"
    for document in (dotted, header):
        with pytest.raises(DocumentTooDeep):
            load_toml(document, source="config")


def test_brackets_inside_strings_and_comments_are_not_structure() -> None:
    opening = "[" * 100
    json_text = json.dumps({"s": opening, "t": "]" * 100 + '\\"' + opening})
    assert load_json(json_text, source="body")["s"] == opening
    toml_text = (
        f'a = "{opening}"  # {opening}\n'
        f"b = '{opening}'\n"
        f'c = """\n{opening}\n"""\n'
        f"d = '''{opening}'''\n"
        "e = [[1], [2]]\n"
    )
    assert load_toml(toml_text, source="config") == tomllib.loads(toml_text)


def test_syntax_errors_stay_the_parsers_own() -> None:
    with pytest.raises(json.JSONDecodeError):
        load_json("[" * 40 + "]" * 39, source="body", limit=64)
    with pytest.raises(tomllib.TOMLDecodeError):
        load_toml("a = [1,", source="config")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"cash": NaN}', "cash"),
        ('{"fx": {"USD": Infinity}}', "fx.USD"),
        ('{"positions": [{"q": 1}, {"q": -Infinity}]}', "positions[1].q"),
        ('{"price": 1e400}', "price"),
    ],
)
def test_non_finite_json_numbers_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(NonFiniteNumber) as info:
        load_json(text, source="body")
    assert info.value.field == field
    assert field in info.value.message


def test_large_but_finite_numbers_pass() -> None:
    assert load_json('{"q": 1e308, "r": -1.5e-300}', source="body") == {
        "q": 1e308,
        "r": -1.5e-300,
    }


def test_find_non_finite_reports_the_first_in_document_order() -> None:
    data = {"a": [1.0, float("inf")], "b": float("nan")}
    assert find_non_finite(data) == ("a[1]", float("inf"))
    assert find_non_finite({"ok": [1, 2.5, "x"]}) is None


def test_the_limit_is_a_setting_and_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents.max_nesting.cache_clear()
    try:
        monkeypatch.setenv("PLANFORGE_MAX_NESTING", "4")
        with pytest.raises(DocumentTooDeep, match="4 levels"):
            load_json(nested_json(5), source="body")
        documents.max_nesting.cache_clear()
        monkeypatch.setenv("PLANFORGE_MAX_NESTING", "deep")
        with pytest.raises(SettingsError, match="PLANFORGE_MAX_NESTING"):
            load_json(nested_json(40), source="body")
    finally:
        documents.max_nesting.cache_clear()
