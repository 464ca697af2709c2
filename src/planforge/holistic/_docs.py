"""Markdown reference of every registered module, written from what the modules declare.

The text comes only from each module's metadata, docstring and `Params` model (types,
defaults, bounds and field descriptions), so the documentation cannot drift from the code.
Output is deterministic: modules in pipeline kind order, then by name; no dates, no absolute
paths. A module that cannot be imported is still listed, with the reason its parameters are
unknown.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

import tomli_w
from pydantic import BaseModel

from planforge.holistic._models import ENGINE_PARAMS
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic.errors import ModuleLoadError
from planforge.holistic.modules import KINDS, ModuleMetadata

__all__ = ["ParamDoc", "kind_title", "module_docs", "param_docs"]

_BOUNDS: Final = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
_LENGTHS: Final = (("min_length", "length >="), ("max_length", "length <="))


@dataclass(frozen=True, slots=True)
class ParamDoc:
    """One parameter as a person reads it: the TOML key, its type, default, bounds, meaning."""

    name: str
    type: str
    default: str
    bounds: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "bounds": self.bounds,
            "description": self.description,
        }


def kind_title(kind: str) -> str:
    """`opportunity_calculators` -> `Opportunity calculators`."""
    return kind.replace("_", " ").capitalize()


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "none"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg, default=str) for arg in args)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{name}[{inner}]" if inner else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(metadata: list[Any]) -> str:
    """`>= 0.01, <= 10.0` from the field's constraints (annotated-types objects)."""
    parts: list[str] = []
    for item in metadata:
        for attribute, symbol in (*_BOUNDS, *_LENGTHS):
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value!r}")
    return ", ".join(parts)


def _literal(value: Any) -> str:
    """A default as it would be written (JSON literals read the same as TOML's)."""
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, default=str, sort_keys=True)


def param_docs(params: type[BaseModel]) -> list[ParamDoc]:
    """The parameters of a `Params` model, in declaration order, under their TOML keys
    (without those the engine sets from `[planner]`: a module table may not set them)."""
    defaults = params().model_dump(mode="json")
    rows: list[ParamDoc] = []
    for field_name, info in params.model_fields.items():
        if field_name in ENGINE_PARAMS:
            continue
        key = info.alias if isinstance(info.alias, str) and info.alias else field_name
        rows.append(
            ParamDoc(
                name=key,
                type=_type_name(info.annotation),
                default=_literal(defaults.get(field_name)),
                bounds=_bounds(list(info.metadata)),
                description=" ".join((info.description or "").split()),
            )
        )
    return rows


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _where(metadata: ModuleMetadata) -> str:
    """The class, without the absolute path of a plugin directory (machine-specific)."""
    if not metadata.target:
        return "unknown"
    if metadata.source == "directory":
        path, _, qualname = metadata.target.rpartition(":")
        return f"`{PurePath(path).name}:{qualname}` (plugin directory)"
    return f"`{metadata.target}`"


def _module_section(registry: ModuleRegistry, metadata: ModuleMetadata) -> list[str]:
    kind, name = metadata.kind, metadata.name
    key = f"{kind}.{name}"
    lines = [f"### `{key}` {metadata.version}", ""]
    if metadata.description:
        lines += [metadata.description, ""]
    facts = [
        ("author", metadata.author or "unknown"),
        ("tags", ", ".join(metadata.tags) or "none"),
        ("dependencies", ", ".join(f"`{d}`" for d in metadata.dependencies) or "none"),
        ("class", _where(metadata)),
    ]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in facts]
    lines.append("")
    docstring = inspect.cleandoc(registry.docstring(kind, name) or "")
    if docstring:
        lines += [docstring, ""]
    lines += ["**Parameters**", ""]
    try:
        cls = registry.load(kind, name)
    except ModuleLoadError as exc:
        return [*lines, f"Parameters unknown: the module cannot be loaded ({exc.cause}).", ""]
    rows = param_docs(cls.Params)
    if not rows:
        lines += ["This module takes no parameters.", ""]
    else:
        lines += [
            "| name | type | default | bounds | description |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| `{row.name}` | {_cell(row.type)} | `{_cell(row.default)}` | "
                f"{_cell(row.bounds)} | {_cell(row.description)} |"
            )
        lines.append("")
    example: dict[str, Any] = {"enabled": True}
    defaults = {
        k: v
        for k, v in cls.Params().model_dump(mode="json", by_alias=True).items()
        if v is not None and k not in ENGINE_PARAMS
    }
    if defaults:
        example["params"] = defaults
    toml = tomli_w.dumps({kind: {name: example}}).strip()
    lines += ["```toml", toml, "```", ""]
    return lines


def module_docs(registry: ModuleRegistry) -> str:
    """Markdown documentation of every registered module, grouped by kind in pipeline order.

    Imports each module to read its `Params` (like `config schema` does).
    """
    modules = registry.list()
    lines = [
        "# planforge holistic modules",
        "",
        "Generated by `planforge modules docs` from each module's metadata, docstring and "
        "parameters. A module runs when its table enables it; its parameters go in the "
        "`params` table under it:",
        "",
        "```toml",
        "[<kind>.<name>]",
        "enabled = true",
        "",
        "[<kind>.<name>.params]",
        "# the parameters listed below",
        "```",
        "",
        "The pipeline runs the kinds in this order: "
        + ", ".join(f"{kind_title(k).lower()} (`{k}`)" for k in KINDS)
        + ".",
        "",
    ]
    for kind in KINDS:
        of_kind = [m for m in modules if m.kind == kind]
        lines += [f"## {kind_title(kind)} (`{kind}`)", ""]
        if not of_kind:
            lines += ["No module of this kind is registered.", ""]
            continue
        lines += [
            "| module | version | description |",
            "|---|---|---|",
            *(f"| `{m.name}` | {m.version} | {_cell(m.description)} |" for m in of_kind),
            "",
        ]
        for metadata in of_kind:
            lines += _module_section(registry, metadata)
    return "\n".join(lines).rstrip("\n") + "\n"
