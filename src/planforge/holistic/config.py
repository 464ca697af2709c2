"""The holistic planner's TOML configuration: parsed into typed models, or one clear error.

```toml
[planner]                 # the engine's keys (EngineSettings) and the domain's (its Settings)
max_depth = 5
[opportunity_calculators.profit_taking]
enabled = true
[opportunity_calculators.profit_taking.params]
windfall_threshold = 0.3
```

Rules:

- Every problem is a `ConfigError` whose `key` names the offending key (`None` for the whole
  document: bad TOML, too large). Nothing is returned until everything is valid, so a bad
  file never half-applies.
- `[planner]` keys go to `EngineSettings` when the engine owns them, the others to the
  domain's Settings model; a key that neither knows is an error listing the valid keys. A key
  both declare is given to both.
- Module tables must name registered modules (metadata only, no import). Only ENABLED modules
  are imported, and their `params` validated against the module's `Params` model; a disabled
  module's params are kept as written and validated when it is enabled. `enabled` defaults to
  false.
- Module order never depends on the file: `enabled(kind)` lists modules by name.
- TOML has no null: `module_timeout_s = 0` means "no timeout, run modules inline" (None), and
  `dump_config` leaves out keys whose value is None.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from planforge.documents import find_non_finite, load_toml
from planforge.errors import DocumentError, PlannerError
from planforge.holistic.cache import sha256_digest
from planforge.holistic.modules import KINDS, HolisticModule
from planforge.holistic.registry import ModuleLoadError, ModuleRegistry

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "EngineSettings",
    "HolisticConfig",
    "ModuleConfig",
    "config_digest",
    "config_json_schema",
    "default_config",
    "dump_config",
    "estimate_sequences",
    "load_config",
    "parse_config",
]

#: A configuration larger than this is refused before parsing.
MAX_CONFIG_BYTES: Final = 256 * 1024
_MAX_REPORTED_ERRORS: Final = 5
_MODULE_KEYS: Final = ("enabled", "params")
_SCHEMA_KEY: Final = "$schema"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class ConfigError(PlannerError):
    """A configuration that cannot be used; `key` is the dotted key at fault (None: the file)."""

    def __init__(
        self,
        detail: str,
        *,
        key: str | None = None,
        source: str = "config",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(
            f"{source}: {detail}",
            where="config",
            context={"key": key, "source": source, "line": line, "column": column},
        )
        self.key = key
        self.source = source
        self.line = line
        self.column = column


class EngineSettings(BaseModel):
    """The engine's own `[planner]` keys; every stage's output has an explicit bound here."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_depth: int = Field(5, ge=1, le=10, description="Most steps in one sequence.")
    max_opportunities_per_category: int = Field(
        5, ge=1, le=1000, description="Most candidates each opportunity calculator keeps."
    )
    priority_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Sequences whose mean action priority is below this are infeasible.",
    )
    beam_width: int = Field(10, ge=1, le=1000, description="Sequences a beam search keeps.")
    max_candidates: int = Field(
        24,
        ge=1,
        le=1000,
        description="Most candidates (all categories, by priority) given to sequence generators.",
    )
    max_sequences: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="Bound on every stage's output, and on the sequences evaluated.",
    )
    max_patterns_per_generator: int = Field(
        200, ge=1, le=100_000, description="Most sequences one pattern generator may return."
    )
    module_timeout_s: float | None = Field(
        2.0,
        ge=0.0,
        le=600.0,
        description="Seconds a module call may take; 0 runs modules inline without a timeout.",
    )
    slow_call_s: float = Field(
        1.0,
        gt=0.0,
        le=600.0,
        description="A module call slower than this counts as slow for its circuit breaker.",
    )
    breaker_window: int = Field(
        20, ge=1, le=10_000, description="Module calls in each circuit breaker's sliding window."
    )
    breaker_min_calls: int = Field(
        5, ge=1, le=10_000, description="Calls needed in the window before a breaker can trip."
    )
    breaker_failure_rate: float = Field(
        0.5, gt=0.0, le=1.0, description="Failure rate in the window that opens a breaker."
    )
    breaker_slow_call_rate: float = Field(
        1.0, gt=0.0, le=1.0, description="Slow-call rate in the window that opens a breaker."
    )
    breaker_open_s: float = Field(
        30.0,
        gt=0.0,
        le=86_400.0,
        description="Seconds an open breaker skips its module before trial calls (backs off).",
    )
    cache_ttl_s: float = Field(
        60.0,
        ge=0.0,
        le=86_400.0,
        description="Seconds a cached module result stays valid; 0 turns the cache off.",
    )
    cache_max_entries: int = Field(
        512, ge=0, le=1_000_000, description="Most cached module results; 0 turns the cache off."
    )
    evaluation_batch_size: int = Field(
        65_536, ge=1, le=10_000_000, description="Sequences scored per vectorised batch."
    )

    @field_validator("module_timeout_s")
    @classmethod
    def _zero_means_inline(cls, value: float | None) -> float | None:
        return None if value == 0 else value


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    """One module's table. `params` is the validated `Params` model of an enabled module (None
    when disabled); `raw_params` is the params table as written."""

    enabled: bool = False
    params: BaseModel | None = None
    raw_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    module_class: type[HolisticModule] | None = None

    def params_dict(self) -> dict[str, Any]:
        if self.params is not None:
            return self.params.model_dump(mode="json")
        return dict(self.raw_params)


@dataclass(frozen=True, slots=True)
class HolisticConfig:
    """A validated configuration. `modules` has every kind, each by module name in order."""

    planner: EngineSettings
    domain: BaseModel
    modules: Mapping[str, Mapping[str, ModuleConfig]]
    source: str = "config"

    def enabled(self, kind: str) -> list[tuple[str, BaseModel]]:
        """`(name, params)` of the kind's enabled modules, sorted by name."""
        if kind not in self.modules:
            raise PlannerError(
                f"{kind!r} is not a module kind; kinds are {', '.join(KINDS)}.", where="config"
            )
        return [
            (name, module.params)
            for name, module in self.modules[kind].items()
            if module.enabled and module.params is not None
        ]

    def enabled_classes(self, kind: str) -> list[tuple[str, type[HolisticModule], BaseModel]]:
        """`(name, class, params)` of the kind's enabled modules, sorted by name."""
        out: list[tuple[str, type[HolisticModule], BaseModel]] = []
        for name, params in self.enabled(kind):
            cls = self.modules[kind][name].module_class
            assert cls is not None  # enabled modules are always loaded
            out.append((name, cls, params))
        return out

    def enabled_keys(self) -> list[str]:
        """`kind.name` of every enabled module, in pipeline order."""
        return [f"{kind}.{name}" for kind in KINDS for name, _ in self.enabled(kind)]

    def module(self, kind: str, name: str) -> ModuleConfig | None:
        return self.modules.get(kind, {}).get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, deterministic: what `config_digest` hashes."""
        return {
            "planner": self.planner.model_dump(mode="json"),
            "domain": self.domain.model_dump(mode="json"),
            "modules": {
                kind: {
                    name: {"enabled": module.enabled, "params": module.params_dict()}
                    for name, module in self.modules[kind].items()
                }
                for kind in KINDS
            },
        }


def default_config(domain_settings: type[BaseModel], *, source: str = "defaults") -> HolisticConfig:
    """Default engine and domain settings with no module enabled."""
    return HolisticConfig(
        EngineSettings(), domain_settings(), {kind: MappingProxyType({}) for kind in KINDS}, source
    )


# -- parsing ----------------------------------------------------------------------------------


def _field_names(model: type[BaseModel]) -> list[str]:
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
        if key == _SCHEMA_KEY:
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
            parsed[name] = _module_config(kind, name, enabled, raw_params, registry, source)
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
    engine_keys = _field_names(EngineSettings)
    domain_keys = _field_names(domain_settings)
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


def _module_config(
    kind: str,
    name: str,
    enabled: bool,
    raw_params: dict[str, Any],
    registry: ModuleRegistry,
    source: str,
) -> ModuleConfig:
    frozen_raw = MappingProxyType(dict(raw_params))
    if not enabled:
        return ModuleConfig(False, None, frozen_raw, None)
    key = f"{kind}.{name}"
    try:
        cls = registry.load(kind, name)
    except ModuleLoadError as exc:
        raise ConfigError(f"{key}: {exc.message}", key=key, source=source) from exc
    valid = _field_names(cls.Params)
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
    try:
        params = cls.parse_params(raw_params)
    except ValidationError as exc:
        raise _validation_error(exc, f"{key}.params", source) from exc
    return ModuleConfig(True, params, frozen_raw, cls)


# -- schema -----------------------------------------------------------------------------------


def _hoisted(model: type[BaseModel], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The model's schema with its `$defs` moved to the root under a unique prefix."""
    schema = model.model_json_schema(ref_template=f"#/$defs/{prefix}.{{model}}")
    for name, definition in schema.pop("$defs", {}).items():
        defs[f"{prefix}.{name}"] = definition
    return schema


def config_json_schema(
    registry: ModuleRegistry, domain_settings: type[BaseModel]
) -> dict[str, Any]:
    """The JSON Schema of a whole configuration file, from the registered modules.

    Imports every registered module (their `Params` models are the schema). A module that
    cannot be imported gets a permissive params schema whose description says why.
    """
    defs: dict[str, Any] = {}
    engine = _hoisted(EngineSettings, "planner.engine", defs)
    domain = _hoisted(domain_settings, "planner.domain", defs)
    planner_properties = {**domain.get("properties", {}), **engine.get("properties", {})}
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        properties: dict[str, Any] = {}
        for metadata in registry.list(kind):
            name = metadata.name
            try:
                cls = registry.load(kind, name)
            except ModuleLoadError as exc:
                params: dict[str, Any] = {
                    "type": "object",
                    "description": f"Parameters unknown: {exc.message}",
                }
                docs = ""
            else:
                params = _hoisted(cls.Params, f"{kind}.{name}", defs)
                params["additionalProperties"] = False
                docs = (cls.__doc__ or "").strip()
            description = metadata.description or docs.split("\n\n", 1)[0]
            properties[name] = {
                "type": "object",
                "title": f"{kind}.{name} {metadata.version}",
                "description": description,
                "additionalProperties": False,
                "properties": {
                    "enabled": {
                        "type": "boolean",
                        "default": False,
                        "description": "Run this module (its code is imported only when true).",
                    },
                    "params": params,
                },
            }
        kinds[kind] = {"type": "object", "additionalProperties": False, "properties": properties}
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "planforge holistic planner configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            _SCHEMA_KEY: {"type": "string", "description": "The JSON Schema of this file."},
            "planner": {
                "type": "object",
                "description": "Engine and domain settings.",
                "additionalProperties": False,
                "properties": planner_properties,
            },
            **kinds,
        },
    }
    if defs:
        schema["$defs"] = dict(sorted(defs.items()))
    return schema


# -- writing ----------------------------------------------------------------------------------


def _without_none(value: Any) -> Any:
    """TOML has no null: unset optional values are left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(item) for item in value]
    return value


def dump_config(config: HolisticConfig) -> str:
    """TOML text that parses back to an equal configuration (same `config_digest`).

    Every key is written, defaults included, so the text is a complete record; planner keys
    in model order, modules by kind (pipeline order) then name, params by name.
    """
    planner = config.planner.model_dump(mode="json")
    if planner.get("module_timeout_s") is None:
        planner["module_timeout_s"] = 0
    for key, value in config.domain.model_dump(mode="json", by_alias=True).items():
        planner.setdefault(key, value)
    document: dict[str, Any] = {"planner": planner}
    for kind in KINDS:
        modules: dict[str, Any] = {}
        for name, module in config.modules[kind].items():
            table: dict[str, Any] = {"enabled": module.enabled}
            params = module.params_dict()
            if params:
                table["params"] = dict(sorted(params.items()))
            modules[name] = table
        if modules:
            document[kind] = modules
    return tomli_w.dumps(_without_none(document))


def config_digest(config: HolisticConfig) -> str:
    """sha256 of the canonical JSON of `to_dict()`: equal configurations, equal digests."""
    return sha256_digest(config.to_dict())


# -- dry runs ---------------------------------------------------------------------------------


def _ordered_sequences(candidates: int, max_depth: int, cap: int) -> int:
    """Ordered selections of 1..max_depth distinct candidates, stopping once past `cap`."""
    total = 0
    term = 1
    for depth in range(1, max_depth + 1):
        if depth > candidates:
            break
        term *= candidates - depth + 1
        total += term
        if total >= cap:
            return cap
    return total


def _declared_bound(
    cls: type[HolisticModule] | None, params: BaseModel, **facts: int
) -> int | None:
    """A module's own `estimate_output(params, candidates=..., max_depth=...)`, if it has one."""
    hook = getattr(cls, "estimate_output", None)
    if not callable(hook):
        return None
    try:
        value = hook(params, **facts)
    except Exception:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def estimate_sequences(config: HolisticConfig, candidates_per_category: int) -> int:
    """An upper bound on the sequences a run would evaluate, for dry runs.

    Candidates: `min(calculators * min(candidates_per_category, max_opportunities_per_category),
    max_candidates)`. Each pattern generator adds at most `max_patterns_per_generator`; each
    sequence generator at most `max_sequences`, or the ordered selections of up to `max_depth`
    candidates if fewer. A module may declare a tighter bound with a classmethod
    `estimate_output(params, *, candidates, max_depth) -> int`. The total is capped at
    `max_sequences`, the bound on the evaluated batch.
    """
    settings = config.planner
    calculators = len(config.enabled("opportunity_calculators"))
    if calculators == 0 or candidates_per_category <= 0:
        return 0
    per_category = min(candidates_per_category, settings.max_opportunities_per_category)
    candidates = min(calculators * per_category, settings.max_candidates)
    facts = {"candidates": candidates, "max_depth": settings.max_depth}
    total = 0
    for _, cls, params in config.enabled_classes("pattern_generators"):
        bound = settings.max_patterns_per_generator
        declared = _declared_bound(cls, params, **facts)
        total += bound if declared is None else min(bound, declared)
    for _, cls, params in config.enabled_classes("sequence_generators"):
        bound = _ordered_sequences(candidates, settings.max_depth, settings.max_sequences)
        declared = _declared_bound(cls, params, **facts)
        total += bound if declared is None else min(bound, declared)
    return min(total, settings.max_sequences)
