"""Differences between two planner configurations: as text, and by meaning.

The text diff shows what an editor changed, comments and ordering included. The semantic
diff compares what the planner would actually run: both documents are parsed and validated
with the holistic planner's validator, defaults filled in, so a key written out with its
default value, a reordered table or a comment is no difference at all.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from planforge.configstore._records import ConfigVersion
    from planforge.holistic import HolisticConfig

__all__ = [
    "ParamChange",
    "PlannerChange",
    "SemanticDiff",
    "config_label",
    "parse_validated",
    "semantic_diff",
    "semantic_diff_configs",
    "unified_diff",
]


class ParamChange(NamedTuple):
    """One parameter of a module enabled on both sides whose value differs."""

    module: str  # "kind.name"
    param: str
    old: Any
    new: Any


class PlannerChange(NamedTuple):
    """One `[planner]` key (engine or domain setting) whose value differs."""

    key: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class SemanticDiff:
    """What changes when the planner runs B instead of A; every list is sorted."""

    modules_enabled: tuple[str, ...] = ()
    modules_disabled: tuple[str, ...] = ()
    params_changed: tuple[ParamChange, ...] = ()
    planner_changed: tuple[PlannerChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (
            self.modules_enabled
            or self.modules_disabled
            or self.params_changed
            or self.planner_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "modules_enabled": list(self.modules_enabled),
            "modules_disabled": list(self.modules_disabled),
            "params_changed": [change._asdict() for change in self.params_changed],
            "planner_changed": [change._asdict() for change in self.planner_changed],
            "is_empty": self.is_empty,
        }

    def lines(self) -> list[str]:
        """One line per difference, for people."""
        out = [f"+ enabled  {key}" for key in self.modules_enabled]
        out += [f"- disabled {key}" for key in self.modules_disabled]
        out += [
            f"~ {change.module}.params.{change.param}: {change.old!r} -> {change.new!r}"
            for change in self.params_changed
        ]
        out += [
            f"~ planner.{change.key}: {change.old!r} -> {change.new!r}"
            for change in self.planner_changed
        ]
        return out


def _text(side: ConfigVersion | str) -> str:
    return side if isinstance(side, str) else side.toml


def config_label(version: ConfigVersion) -> str:
    """`name vN (#id)`: how a stored version is named in diffs and messages."""
    return f"{version.name} v{version.version} (#{version.id})"


def unified_diff(
    a: ConfigVersion | str,
    b: ConfigVersion | str,
    *,
    a_label: str | None = None,
    b_label: str | None = None,
    context: int = 3,
) -> str:
    """A unified diff of the two TOML texts; empty when they are identical.

    Labels default to `name vN (#id)` for stored versions and `a`/`b` for plain text.
    """
    if a_label is None:
        a_label = "a" if isinstance(a, str) else config_label(a)
    if b_label is None:
        b_label = "b" if isinstance(b, str) else config_label(b)
    a_lines = _text(a).splitlines(keepends=True)
    b_lines = _text(b).splitlines(keepends=True)
    out: list[str] = []
    for line in difflib.unified_diff(a_lines, b_lines, fromfile=a_label, tofile=b_label, n=context):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def parse_validated(text: str, *, source: str = "config") -> HolisticConfig:
    """Parse TOML text as the holistic planner does; raises `ConfigError` naming the bad key.

    The text is always treated as TOML (never as a preset name or a path), unlike
    `HolisticPortfolioPlanner.load_config`, since stored documents are TOML text.
    """
    from planforge.holistic import default_registry, parse_config
    from planforge.portfolio.domain import PortfolioSettings

    return parse_config(
        text, registry=default_registry(), domain_settings=PortfolioSettings, source=source
    )


def _enabled_params(config: HolisticConfig) -> dict[str, dict[str, Any]]:
    """`kind.name` -> validated params (defaults filled) of every enabled module."""
    from planforge.holistic.modules import KINDS

    return {
        f"{kind}.{name}": params.model_dump(mode="json")
        for kind in KINDS
        for name, params in config.enabled(kind)
    }


def _planner_keys(config: HolisticConfig) -> dict[str, Any]:
    """Every `[planner]` key with its effective value: engine keys, then domain keys."""
    keys = dict(config.domain.model_dump(mode="json"))
    keys.update(config.planner.model_dump(mode="json"))  # a key both declare has one value
    return keys


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    missing = object()
    out: list[tuple[str, Any, Any]] = []
    for key in sorted({*old, *new}):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            out.append(
                (key, None if before is missing else before, None if after is missing else after)
            )
    return out


def semantic_diff_configs(a: HolisticConfig, b: HolisticConfig) -> SemanticDiff:
    """The semantic diff of two parsed configurations."""
    a_modules, b_modules = _enabled_params(a), _enabled_params(b)
    params: list[ParamChange] = []
    for key in sorted(a_modules.keys() & b_modules.keys()):
        for param, old, new in _changed(a_modules[key], b_modules[key]):
            params.append(ParamChange(key, param, old, new))
    return SemanticDiff(
        modules_enabled=tuple(sorted(b_modules.keys() - a_modules.keys())),
        modules_disabled=tuple(sorted(a_modules.keys() - b_modules.keys())),
        params_changed=tuple(params),
        planner_changed=tuple(
            PlannerChange(key, old, new)
            for key, old, new in _changed(_planner_keys(a), _planner_keys(b))
        ),
    )


def semantic_diff(
    a: ConfigVersion | str,
    b: ConfigVersion | str,
    *,
    a_label: str | None = None,
    b_label: str | None = None,
) -> SemanticDiff:
    """What changes in the planner's behaviour from A to B.

    Both sides are validated first: a side that is not a valid configuration raises
    `ConfigError` naming it (`a_label`/`b_label`) and the bad key. Params are compared for
    modules enabled on both sides; a module enabled on one side only is listed as enabled
    or disabled (a disabled module's params never run, so they are not compared).
    """
    if a_label is None:
        a_label = "a" if isinstance(a, str) else config_label(a)
    if b_label is None:
        b_label = "b" if isinstance(b, str) else config_label(b)
    return semantic_diff_configs(
        parse_validated(_text(a), source=a_label), parse_validated(_text(b), source=b_label)
    )
