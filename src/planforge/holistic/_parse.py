"""Parsing a TOML configuration into a `HolisticConfig`, or one `ConfigError` naming the key."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from planforge.documents import find_non_finite, load_toml
from planforge.errors import DocumentError
from planforge.holistic._models import ENGINE_PARAMS, SCORING_PARAM, HolisticConfig, ModuleConfig
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic._settings import EngineSettings
from planforge.holistic.errors import ConfigError, ModuleLoadError
from planforge.holistic.modules import KINDS

__all__ = ["MAX_CONFIG_BYTES", "SCHEMA_KEY", "field_names", "load_config", "parse_config"]

#: A configuration larger than this is refused before parsing.
MAX_CONFIG_BYTES: Final = 256 * 1024
#: The top-level key naming the file's JSON Schema (the only key besides the tables).
SCHEMA_KEY: Final = "$schema"
_MAX_REPORTED_ERRORS: Final = 5
_MODULE_KEYS: Final = ("enabled", "params")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def field_names(model: type[BaseModel]) -> list[str]:
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(info.alias if isinstance(info.alias, str) and info.alias else name)
    return names


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _validation_error(exc: ValidationError, prefix: str, source: str) -> ConfigError:
    errors = exc.errors(include_url=False)
    parts: list[str] = []
    first_key = prefix
    for index, error in enumerate(errors[:_MAX_REPORTED_ERRORS]):
        loc = ".".join(str(part) for part in error["loc"])
        key = f"{prefix}.{loc}" if loc else prefix
        if index == 0:
            first_key = key
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{key}: {message}")
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return ConfigError("; ".join(parts), key=first_key, source=source)


def _check_size(size: int, source: str) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"the configuration is {size} bytes, more than the {MAX_CONFIG_BYTES} allowed; "
            "a planner configuration is a few kilobytes, check you passed the right file",
            source=source,
        )


def parse_config(
    text: str,
    *,
    registry: ModuleRegistry,
    domain_settings: type[BaseModel],
    source: str = "config",
) -> HolisticConfig:
    """Validate a whole configuration; raises `ConfigError` naming the first bad key."""
    _check_size(len(text.encode("utf-8", errors="replace")), source)
    try:
        document = load_toml(text, source=source)
    except tomllib.TOMLDecodeError as exc:
        position = _TOML_POSITION.search(str(exc))
        line, column = (int(position[1]), int(position[2])) if position else (None, None)
        raise ConfigError(
            f"not valid TOML: {exc}", source=source, line=line, column=column
        ) from exc
    except DocumentError as exc:
        raise ConfigError(exc.problem, source=source) from None
    non_finite = find_non_finite(document)
    if non_finite is not None:
        key, value = non_finite
        raise ConfigError(f"{key}: must be a finite number, got {value}", key=key, source=source)
    for key, value in document.items():
        if key == SCHEMA_KEY:
            if not isinstance(value, str):
                raise ConfigError(
                    f"{key}: must be a string (the URL or path of the JSON Schema)",
                    key=key,
                    source=source,
                )
        elif key != "planner" and key not in KINDS:
            raise ConfigError(
                f"{key}: unknown table; the valid tables are planner, {', '.join(KINDS)}",
                key=key,
                source=source,
            )
        elif not isinstance(value, dict):
            raise ConfigError(
                f"{key}: must be a table ([{key}]), got {_type_name(value)}",
                key=key,
                source=source,
            )
    engine, domain = _parse_planner(document.get("planner", {}), domain_settings, source)
    tables = _module_tables(document, registry, source)
    _check_dependencies(tables, registry, source)
    modules: dict[str, Mapping[str, ModuleConfig]] = {}
    for kind in KINDS:
        parsed: dict[str, ModuleConfig] = {}
        for name, (enabled, raw_params) in sorted(tables[kind].items()):
            parsed[name] = _module_config(
                kind, name, enabled, raw_params, registry, source, engine=engine, domain=domain
            )
        modules[kind] = MappingProxyType(parsed)
    return HolisticConfig(engine, domain, MappingProxyType(modules), source)


def load_config(
    path: str | Path,
    *,
    registry: ModuleRegistry,
    domain_settings: type[BaseModel],
) -> HolisticConfig:
    """Read and parse a TOML file (size checked before reading)."""
    source = str(path)
    try:
        size = Path(path).stat().st_size
        _check_size(size, source)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration file: {exc.strerror or exc}", source=source
        ) from exc
    _check_size(len(data), source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", source=source
        ) from exc
    return parse_config(text, registry=registry, domain_settings=domain_settings, source=source)


def _parse_planner(
    table: Mapping[str, Any], domain_settings: type[BaseModel], source: str
) -> tuple[EngineSettings, BaseModel]:
    engine_keys = field_names(EngineSettings)
    domain_keys = field_names(domain_settings)
    for key in table:
        if key not in engine_keys and key not in domain_keys:
            valid = ", ".join(sorted({*engine_keys, *domain_keys}))
            raise ConfigError(
                f"planner.{key}: unknown key; valid [planner] keys are {valid}",
                key=f"planner.{key}",
                source=source,
            )
    try:
        engine = EngineSettings.model_validate({k: v for k, v in table.items() if k in engine_keys})
    except ValidationError as exc:
        raise _validation_error(exc, "planner", source) from exc
    try:
        domain = domain_settings.model_validate(
            {k: v for k, v in table.items() if k in domain_keys}
        )
    except ValidationError as exc:
        raise _validation_error(exc, "planner", source) from exc
    return engine, domain


def _module_tables(
    document: Mapping[str, Any], registry: ModuleRegistry, source: str
) -> dict[str, dict[str, tuple[bool, dict[str, Any]]]]:
    """Shape checks of every module table, against metadata only (nothing is imported)."""
    tables: dict[str, dict[str, tuple[bool, dict[str, Any]]]] = {}
    for kind in KINDS:
        found: dict[str, tuple[bool, dict[str, Any]]] = {}
        for name, entry in document.get(kind, {}).items():
            key = f"{kind}.{name}"
            if not registry.has(kind, name):
                known = registry.names(kind)
                listed = ", ".join(known) if known else "none are registered"
                raise ConfigError(
                    f"{key}: no such module; known {kind}: {listed}", key=key, source=source
                )
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"{key}: must be a table ([{key}] with enabled and params), "
                    f"got {_type_name(entry)}",
                    key=key,
                    source=source,
                )
            for item in entry:
                if item not in _MODULE_KEYS:
                    raise ConfigError(
                        f"{key}.{item}: unknown key; a module table holds only 'enabled' and "
                        f"'params' (parameters go in [{key}.params])",
                        key=f"{key}.{item}",
                        source=source,
                    )
            enabled = entry.get("enabled", False)
            if not isinstance(enabled, bool):
                raise ConfigError(
                    f"{key}.enabled: must be true or false, got {enabled!r}",
                    key=f"{key}.enabled",
                    source=source,
                )
            params = entry.get("params", {})
            if not isinstance(params, dict):
                raise ConfigError(
                    f"{key}.params: must be a table ([{key}.params]), got {_type_name(params)}",
                    key=f"{key}.params",
                    source=source,
                )
            found[name] = (enabled, params)
        tables[kind] = found
    return tables


def _check_dependencies(
    tables: Mapping[str, Mapping[str, tuple[bool, Any]]], registry: ModuleRegistry, source: str
) -> None:
    enabled = {(kind, name) for kind in KINDS for name, (on, _) in tables[kind].items() if on}
    for kind in KINDS:
        for name in sorted(tables[kind]):
            if (kind, name) not in enabled:
                continue
            for dependency in registry.get_metadata(kind, name).dependencies:
                dep_kind, dot, dep_name = dependency.rpartition(".")
                if dot:
                    met = (dep_kind, dep_name) in enabled
                    candidates = [dependency] if registry.has(dep_kind, dep_name) else []
                else:
                    met = any(n == dep_name for _, n in enabled)
                    candidates = [f"{k}.{dep_name}" for k in KINDS if registry.has(k, dep_name)]
                if met:
                    continue
                key = f"{kind}.{name}"
                wanted = candidates[0] if len(candidates) == 1 else dependency
                if candidates:
                    advice = f"enable it with [{wanted}] enabled = true"
                else:
                    advice = "no such module is registered; install it or disable this module"
                raise ConfigError(f"{key} needs {wanted} enabled; {advice}", key=key, source=source)


def _engine_param(key: str, raw_params: Mapping[str, Any], source: str) -> None:
    """A setting the engine owns, written in a module's params: say where it goes now."""
    for param in ENGINE_PARAMS:
        if param == SCORING_PARAM and param in raw_params:
            raise ConfigError(
                f"{key}.params.{param}: not a module parameter; the score's weights and the "
                "trading rules are [planner] keys, set once for the whole engine",
                key=f"{key}.params.{param}",
                source=source,
            )
        if param in raw_params:
            raise ConfigError(
                f"{key}.params.{param}: not a module parameter; {param} is one setting for "
                f"the whole engine: remove it here and set it once as [planner] {param} = "
                f"{raw_params[param]!r}",
                key=f"{key}.params.{param}",
                source=source,
            )


def _module_config(
    kind: str,
    name: str,
    enabled: bool,
    raw_params: dict[str, Any],
    registry: ModuleRegistry,
    source: str,
    *,
    engine: EngineSettings,
    domain: BaseModel,
) -> ModuleConfig:
    key = f"{kind}.{name}"
    _engine_param(key, raw_params, source)
    frozen_raw = MappingProxyType(dict(raw_params))
    if not enabled:
        return ModuleConfig(False, None, frozen_raw, None)
    try:
        cls = registry.load(kind, name)
    except ModuleLoadError as exc:
        raise ConfigError(f"{key}: {exc.message}", key=key, source=source) from exc
    valid = field_names(cls.Params)
    for param in raw_params:
        if param not in valid:
            known = (
                f"valid parameters: {', '.join(sorted(valid))}"
                if valid
                else "this module takes no parameters"
            )
            raise ConfigError(
                f"{key}.params.{param}: unknown parameter; {known}",
                key=f"{key}.params.{param}",
                source=source,
            )
    given = {
        param: domain if param == SCORING_PARAM else getattr(engine, param)
        for param in ENGINE_PARAMS
        if param in valid
    }
    try:
        params = cls.parse_params({**raw_params, **given})
    except ValidationError as exc:
        raise _validation_error(exc, f"{key}.params", source) from exc
    return ModuleConfig(True, params, frozen_raw, cls)
