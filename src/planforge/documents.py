"""Reading JSON and TOML from people: bounded nesting, finite numbers, errors that name a place.

Python's parsers recurse once per nesting level, so `a = [[[[...]]]]` 3,000 deep, or a JSON
array as deep, ends in `RecursionError` (a crash with a huge traceback) instead of an error a
person can act on; and `json.loads` takes `NaN`, `Infinity` and `1e400` as numbers. Every
document planforge takes from outside (request bodies, configuration and context files)
passes here first. The nesting bound is `PLANFORGE_MAX_NESTING` (default 32; planforge's own
configurations and contexts nest 4 deep); brackets are counted on the text before any parser
runs, outside strings and comments, so the check never recurses itself.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from functools import lru_cache
from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from planforge.errors import DocumentTooDeep, NonFiniteNumber

__all__ = [
    "DEFAULT_MAX_NESTING",
    "canonical_json",
    "check_nesting",
    "find_non_finite",
    "load_json",
    "load_toml",
    "max_nesting",
]

DEFAULT_MAX_NESTING: Final = 32

#: Strings (and TOML's comments), whose brackets are text, not structure.
_JSON_STRINGS: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOML_TEXT: Final = re.compile(
    r'"""[\s\S]*?"""(?!")|\'\'\'[\s\S]*?\'\'\'(?!\')'
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\n]*\'|#[^\n]*'
)
_NOT_BRACKETS: Final = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR: Final = re.compile(r"[\[{][\]}]")


class _Limits(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    max_nesting: int = Field(
        DEFAULT_MAX_NESTING, validation_alias="PLANFORGE_MAX_NESTING", ge=2, le=500
    )


@lru_cache(maxsize=1)
def max_nesting() -> int:
    """`PLANFORGE_MAX_NESTING`, read once per process."""
    from planforge.settings import build_settings

    return build_settings(_Limits, {}).max_nesting


def _bracket_depth(brackets: str, bound: int) -> int:
    """How deep brackets nest, counted up to `bound + 1`: each round of the loop removes the
    innermost pairs, in C, so a document costs as many passes as it is deep."""
    rounds = 0
    while brackets:
        inner = _INNERMOST_PAIR.sub("", brackets)
        if len(inner) == len(brackets):
            break  # unbalanced: the parser will say where
        rounds += 1
        if rounds > bound:
            break
        brackets = inner
    return rounds


def check_nesting(text: str, *, toml: bool, source: str, limit: int | None = None) -> None:
    """Raise `DocumentTooDeep` when brackets and braces nest deeper than the limit."""
    bound = max_nesting() if limit is None else limit
    if text.count("[") + text.count("{") <= bound:
        return  # too few brackets to be too deep: the common small case costs two counts
    structure = (_TOML_TEXT if toml else _JSON_STRINGS).sub("", text)
    depth = _bracket_depth(_NOT_BRACKETS.sub("", structure), bound)
    if depth > bound:
        raise DocumentTooDeep(source, bound)


def _structure_depth(value: Any) -> int:
    """How deep tables and arrays nest in a parsed document (iterative: never recurses)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def find_non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The first (in document order) NaN or infinite float and where it is, else None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where or "value", item
        elif isinstance(item, dict):
            stack.extend(
                (child, f"{where}.{key}" if where else str(key))
                for key, child in reversed(list(item.items()))
            )
        elif isinstance(item, list):
            stack.extend(
                (child, f"{where}[{index}]") for index, child in reversed(list(enumerate(item)))
            )
    return None


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8, finite numbers only: the same text (and so the same
    digest) for equal data in every process. Raises `TypeError` or `ValueError` for values
    that are not JSON data."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def load_json(text: str | bytes, *, source: str, limit: int | None = None) -> Any:
    """Parse JSON within the nesting bound and with finite numbers only.

    A syntax error stays a `json.JSONDecodeError` (callers report it their own way).
    """
    decoded = text.decode("utf-8") if isinstance(text, bytes) else text
    check_nesting(decoded, toml=False, source=source, limit=limit)
    non_finite: list[float] = []

    def number(spelled: str) -> float:
        value = float(spelled)
        if math.isinf(value):
            non_finite.append(value)
        return value

    def constant(spelled: str) -> float:  # NaN, Infinity, -Infinity
        non_finite.append(float(spelled))
        return float(spelled)

    data = json.loads(decoded, parse_float=number, parse_constant=constant)
    if non_finite:  # rare: walk the document only to say where
        found = find_non_finite(data)
        if found is not None:
            raise NonFiniteNumber(source, *found)
    return data


def load_toml(text: str, *, source: str, limit: int | None = None) -> dict[str, Any]:
    """Parse TOML within the nesting bound (brackets, and tables made by dotted keys).

    TOML has no NaN or infinity unless written `nan` or `inf`; callers that need finite
    numbers check values with `find_non_finite`. A syntax error stays a `TOMLDecodeError`.
    """
    bound = max_nesting() if limit is None else limit
    check_nesting(text, toml=True, source=source, limit=bound)
    document = tomllib.loads(text)
    depth = _structure_depth(document)
    if depth > bound:
        raise DocumentTooDeep(source, bound)
    return document
