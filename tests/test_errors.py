from planforge.errors import (
    DocumentError,
    DocumentTooDeep,
    NonFiniteNumber,
    PlannerError,
    SettingsError,
    shown_value,
)


def test_shown_value_keeps_a_short_repr_whole() -> None:
    assert shown_value("abc") == "'abc'"
    assert shown_value(12) == "12"


def test_shown_value_cuts_a_long_repr_to_the_limit() -> None:
    shown = shown_value("x" * 500)
    assert len(shown) == 80
    assert shown.startswith("'xxx")
    assert shown.endswith("...")
    assert len(shown_value(list(range(100)), limit=20)) == 20


def test_settings_error_names_the_variable_and_the_fix() -> None:
    error = SettingsError("FACTORY_SANDBOX_TIMEOUT_S", "soon", "expected a number")
    assert "FACTORY_SANDBOX_TIMEOUT_S='soon' is not valid" in error.message
    assert "Fix or unset FACTORY_SANDBOX_TIMEOUT_S" in error.message
    assert error.to_dict()["context"] == {"variable": "FACTORY_SANDBOX_TIMEOUT_S", "value": "soon"}


def test_a_settings_error_about_a_url_or_token_variable_never_shows_its_value() -> None:
    error = SettingsError(
        "PLANFORGE_REDIS_URL", "http://ops:hunter2@cache:6379", "expected a redis:// URL"
    )
    assert "hunter2" not in error.message
    assert "hunter2" not in str(error.to_dict())
    assert "PLANFORGE_REDIS_URL=<hidden>" in error.message


def test_invalid_context_names_the_field_the_kind_and_the_fix() -> None:
    from planforge.errors import InvalidContext, PlannerError

    error = InvalidContext("positions[0].current_price", "must be greater than 0", kind="portfolio")
    assert isinstance(error, PlannerError)
    assert error.message == (
        "context: positions[0].current_price: must be greater than 0. Fix that field and try again."
    )
    assert (error.field, error.problem, error.kind) == (
        "positions[0].current_price",
        "must be greater than 0",
        "portfolio",
    )
    assert error.to_dict()["context"]["field"] == "positions[0].current_price"


def test_invalid_context_cuts_a_huge_field_or_problem() -> None:
    from planforge.errors import InvalidContext

    error = InvalidContext("hotspots." + "k" * 100_000, "bad " * 100_000)
    assert len(error.field) == InvalidContext.LIMIT
    assert error.field.endswith("...")
    assert len(error.message) < 1000


def test_document_errors_are_planner_errors_that_name_the_source_and_the_fix() -> None:
    deep = DocumentTooDeep("body", 32)
    assert isinstance(deep, DocumentError)
    assert isinstance(deep, PlannerError)
    assert deep.to_dict()["where"] == "document"
    assert str(deep) == (
        "body: nested deeper than the 32 levels allowed (PLANFORGE_MAX_NESTING); "
        "flatten the document"
    )
    nan = NonFiniteNumber("context", "cash", float("nan"))
    assert isinstance(nan, DocumentError)
    assert (nan.source, nan.field) == ("context", "cash")
    assert "cash: must be a finite number, got nan" in str(nan)
