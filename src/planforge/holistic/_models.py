"""A validated configuration: engine settings, domain settings and every module's table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from planforge.errors import PlannerError
from planforge.holistic._settings import EngineSettings
from planforge.holistic.modules import KINDS, HolisticModule

__all__ = ["ENGINE_PARAMS", "SCORING_PARAM", "HolisticConfig", "ModuleConfig", "default_config"]

#: Module parameters the engine sets from `[planner]`: a module whose `Params` declares one
#: receives the engine's value, and a configuration may not set it per module. `scoring` is
#: the domain's part of `[planner]` (for the portfolio: the score's weights and the trading
#: rules), for a module that sizes trades by the score itself.
ENGINE_PARAMS: tuple[str, ...] = ("max_depth", "scoring")
SCORING_PARAM = "scoring"


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    """One module's table. `params` is the validated `Params` model of an enabled module (None
    when disabled); `raw_params` is the params table as written."""

    enabled: bool = False
    params: BaseModel | None = None
    raw_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    module_class: type[HolisticModule] | None = None

    def params_dict(self) -> dict[str, Any]:
        """The params as a configuration writes them: without the ones the engine sets."""
        if self.params is not None:
            return self.params.model_dump(mode="json", exclude=set(ENGINE_PARAMS))
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
