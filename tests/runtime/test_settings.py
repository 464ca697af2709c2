from __future__ import annotations

import pytest

from planforge.errors import SettingsError
from planforge.runtime import RuntimeSettings, load_runtime_settings

VARIABLES = (
    "PLANFORGE_MAX_RUNS_PER_USER",
    "PLANFORGE_ENGINE_TTL_S",
    "PLANFORGE_ENGINE_IDLE_S",
    "PLANFORGE_REAP_INTERVAL_S",
    "PLANFORGE_RUN_TIMEOUT_S",
    "PLANFORGE_EVENT_BUFFER",
    "PLANFORGE_MAX_USERS",
    "PLANFORGE_REDIS_URL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_defaults_match_the_documented_values() -> None:
    settings = load_runtime_settings()
    assert settings.max_runs_per_user == 5
    assert settings.engine_ttl_s == 300.0
    assert settings.engine_idle_s == 300.0
    assert settings.reap_interval_s == 60.0
    assert settings.run_timeout_s == 60.0
    assert settings.event_buffer == 1000
    assert settings.max_users == 100_000
    assert settings.redis_url is None


def test_environment_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANFORGE_MAX_RUNS_PER_USER", "2")
    monkeypatch.setenv("PLANFORGE_EVENT_BUFFER", "50")
    monkeypatch.setenv("PLANFORGE_RUN_TIMEOUT_S", "1.5")
    monkeypatch.setenv("PLANFORGE_REDIS_URL", " redis://127.0.0.1:6379/3 ")
    settings = load_runtime_settings()
    assert settings.max_runs_per_user == 2
    assert settings.event_buffer == 50
    assert settings.run_timeout_s == 1.5
    assert settings.redis_url == "redis://127.0.0.1:6379/3"


def test_an_empty_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANFORGE_REDIS_URL", "")
    assert load_runtime_settings().redis_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLANFORGE_MAX_RUNS_PER_USER", "five"),
        ("PLANFORGE_MAX_RUNS_PER_USER", "0"),
        ("PLANFORGE_ENGINE_TTL_S", "-1"),
        ("PLANFORGE_ENGINE_IDLE_S", "0"),
        ("PLANFORGE_REAP_INTERVAL_S", "soon"),
        ("PLANFORGE_RUN_TIMEOUT_S", "0"),
        ("PLANFORGE_EVENT_BUFFER", "0"),
        ("PLANFORGE_MAX_USERS", "-5"),
        ("PLANFORGE_REDIS_URL", "http://127.0.0.1:6379"),
    ],
)
def test_a_malformed_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_runtime_settings()
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    secret = variable.endswith("_URL")  # a URL may carry a password: never shown
    assert caught.value.value == ("<hidden>" if secret else value)


def test_a_bad_keyword_override_names_the_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_runtime_settings(event_buffer=0)
    assert caught.value.variable == "PLANFORGE_EVENT_BUFFER"
    assert caught.value.value == 0


def test_settings_are_immutable() -> None:
    settings = load_runtime_settings(max_users=10)
    assert isinstance(settings, RuntimeSettings)
    assert settings.max_users == 10
    with pytest.raises(ValueError, match="frozen"):
        settings.max_users = 11  # type: ignore[misc]


def test_a_malformed_redis_url_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from planforge.errors import SettingsError
    from planforge.runtime import load_runtime_settings

    monkeypatch.setenv("PLANFORGE_REDIS_URL", "http://ops:hunter2@cache:6379/0")
    with pytest.raises(SettingsError, match="PLANFORGE_REDIS_URL") as info:
        load_runtime_settings()
    assert "hunter2" not in info.value.message
    assert "redis://" in info.value.message
