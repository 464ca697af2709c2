from __future__ import annotations

import os
from pathlib import Path

import pytest

from planforge.errors import SettingsError
from planforge.settings import factory_setting, load_settings


def test_defaults_follow_the_original_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.min_reliability == 0.25
    assert settings.default_reliability == 0.1
    assert settings.max_profiles == 1000
    assert settings.deep_index_cap_boost == 0.05
    assert settings.hotspot_cap_boost == 0.03
    assert settings.hotspot_threshold == 8
    assert settings.objective_weight == 0.2
    assert settings.reliability_half_life_s == 900
    assert settings.sandbox is True
    assert settings.sandbox_timeout_s == 2.0


def test_lists_are_comma_and_pathsep_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_PLANNERS", " beta, alpha,,alpha ")
    monkeypatch.setenv("FACTORY_PLUGIN_DIRS", os.pathsep.join(["/a", "/b"]))
    settings = load_settings()
    assert settings.allowed_planners == ("alpha", "beta")
    assert settings.plugin_dirs == (Path("/a"), Path("/b"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FACTORY_MIN_RELIABILITY", "abc"),
        ("FACTORY_MIN_RELIABILITY", "1.5"),
        ("FACTORY_MAX_PROFILES", "0"),
        ("FACTORY_SANDBOX", "maybe"),
        ("FACTORY_SANDBOX_TIMEOUT_S", "-1"),
        ("FACTORY_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_value_is_a_clear_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert repr(value) in str(info.value)


def test_importing_planforge_never_reads_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_MIN_RELIABILITY", "abc")
    import importlib

    import planforge.settings

    importlib.reload(planforge.settings)  # must not raise at import
    with pytest.raises(SettingsError):
        planforge.settings.load_settings()


def test_one_setting_is_read_by_the_same_rules_as_all_of_them() -> None:
    assert factory_setting("cache_dir", {"FACTORY_CACHE_DIR": " /var/cache/pf "}) == Path(
        "/var/cache/pf"
    )
    assert factory_setting("cache_dir", {"FACTORY_CACHE_DIR": ""}) is None
    assert factory_setting("force_rediscover", {"FACTORY_FORCE_REDISCOVER": "on"}) is True
    assert factory_setting("force_rediscover", {}) is False
    with pytest.raises(SettingsError, match="greater than or equal to 64"):
        factory_setting("sandbox_max_memory_mb", {"FACTORY_SANDBOX_MAX_MEMORY_MB": "8"})
