"""The one id rule: what it accepts, how it says what is wrong, and that the runtime and the
configuration store both apply it."""

from __future__ import annotations

import pytest

from planforge.configstore._users import check_user_name
from planforge.configstore.errors import InvalidInput
from planforge.ids import ID_EXAMPLE, ID_PATTERN, MAX_ID_LENGTH, id_problem
from planforge.runtime import _context as context

CASES = {
    "alice": None,
    "a.b_c-d:e@f": None,
    "x" * MAX_ID_LENGTH: None,
    ID_EXAMPLE: None,
    "": "must not be empty",
    "op sp": "may only contain letters, digits and _ . : @ -",
    "x:*": "may only contain letters, digits and _ . : @ -",
    "x" * 150: "is 150 characters long; the limit is 128",
    "émile": "may only contain letters, digits and _ . : @ -",
}


@pytest.mark.parametrize(("value", "problem"), CASES.items())
def test_id_problem_names_what_is_wrong(value: str, problem: str | None) -> None:
    assert id_problem(value) == problem
    assert (ID_PATTERN.fullmatch(value) is None) == (problem is not None)


def test_a_non_string_is_not_an_id() -> None:
    assert id_problem(7) == "must be a string, not int"


def runtime_accepts(value: str) -> bool:
    try:
        context.check_id("user_id", value)
    except context.InvalidContextError:
        return False
    return True


def store_accepts(value: str) -> bool:
    try:
        check_user_name(value)
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize("value", CASES)
def test_the_runtime_and_the_store_apply_the_same_rule(value: str) -> None:
    assert context.ID_PATTERN is ID_PATTERN
    assert runtime_accepts(value) == store_accepts(value) == (CASES[value] is None)
