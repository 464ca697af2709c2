"""The JSON Schema of a configuration file, from the registered modules' `Params` models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from planforge.holistic._models import ENGINE_PARAMS
from planforge.holistic._parse import SCHEMA_KEY
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic._settings import EngineSettings
from planforge.holistic.errors import ModuleLoadError
from planforge.holistic.modules import KINDS, ModuleMetadata

__all__ = ["config_json_schema"]


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
        properties = {
            metadata.name: _module_schema(registry, kind, metadata, defs)
            for metadata in registry.list(kind)
        }
        kinds[kind] = {"type": "object", "additionalProperties": False, "properties": properties}
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "planforge holistic planner configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            SCHEMA_KEY: {"type": "string", "description": "The JSON Schema of this file."},
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


def _module_schema(
    registry: ModuleRegistry, kind: str, metadata: ModuleMetadata, defs: dict[str, Any]
) -> dict[str, Any]:
    """One module table's schema: `enabled` and the module's params (its `Params` model)."""
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
        for engine_param in ENGINE_PARAMS:  # set from [planner], never per module
            params.get("properties", {}).pop(engine_param, None)
        params["additionalProperties"] = False
        docs = (cls.__doc__ or "").strip()
    return {
        "type": "object",
        "title": f"{kind}.{name} {metadata.version}",
        "description": metadata.description or docs.split("\n\n", 1)[0],
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
