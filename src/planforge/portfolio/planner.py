"""The holistic portfolio planner, registered through planforge's own `planforge.planners`
entry point and found by the factory like any third-party plugin.

The configuration to plan with is, first found: `run(config=...)`; the run protocol's
`Run.config` (a bucket's configuration, or the one a user named through the runtime); the
context's `planner_config` key (`contract.CONFIG_CONTEXT_KEY`, for direct calls); else the
`default` preset. Each may be a preset name (`default`, `conservative`, `aggressive`), a path
to a TOML file, TOML text or a parsed `HolisticConfig`. Presets and TOML text are parsed once
per distinct text; a path is read again every time (the file may change).

An explanation of the plan (`planforge.holistic.Explanation`, also in `Plan.explanation`) is
built when asked: `run(explain=True)`, the run protocol's `Run.explain`, or the context key
`planner_explain: true` (`contract.EXPLAIN_CONTEXT_KEY`, for direct calls).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from planforge.contract import CONFIG_CONTEXT_KEY, EXPLAIN_CONTEXT_KEY, Plan, Planner, Run
from planforge.holistic import (
    EngineResult,
    EventHub,
    HolisticConfig,
    HolisticEngine,
    ModuleRegistry,
    Progress,
    config_digest,
    default_registry,
    load_config,
    parse_config,
)
from planforge.holistic.errors import ConfigError
from planforge.portfolio.domain import PortfolioDomain, PortfolioSettings
from planforge.portfolio.errors import ContextError

__all__ = ["PRESETS", "HolisticPortfolioPlanner", "preset_text"]

PRESETS: tuple[str, ...] = ("aggressive", "conservative", "default")
_ENGINE_CACHE_SIZE = 16
_PARSED_CACHE_SIZE = 16
_BARE_WORD = re.compile(r"^\s*[A-Za-z0-9_.-]+\s*$")


def preset_text(name: str) -> str:
    """The TOML of a shipped preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; shipped presets: {', '.join(PRESETS)}")
    return (resources.files("planforge.portfolio") / "presets" / f"{name}.toml").read_text(
        encoding="utf-8"
    )


class HolisticPortfolioPlanner(Planner):
    """Rebalances a personal portfolio: calculators propose trades, patterns and generators
    combine them, filters apply the rules, and every candidate sequence is simulated and
    scored in one vectorised pass; the best one becomes the plan."""

    name = "holistic"
    version = "1.0.0"
    capabilities = ("holistic", "portfolio", "rebalance", "trades")
    tags = ("reference", "finance")
    tier = "gold"
    production_ready = True
    reliability_score = 0.9
    description = "Holistic portfolio rebalancing planner with modular, vectorised evaluation"
    keywords = ("rebalance", "portfolio", "allocation", "trades", "holdings", "invest")
    stateful = False
    context_kind = "portfolio"
    accepts_run = True

    def __init__(
        self,
        config: HolisticConfig | str | Path | None = None,
        *,
        registry: ModuleRegistry | None = None,
        events: EventHub | None = None,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.events = events if events is not None else EventHub()
        self.domain = PortfolioDomain()
        self._default = config
        self._engines: OrderedDict[str, HolisticEngine] = OrderedDict()
        self._parsed: OrderedDict[str, HolisticConfig] = OrderedDict()  # by preset or text
        #: The digest of each parsed configuration above, by its id (it is alive while kept)
        self._parsed_digests: dict[int, str] = {}
        self._lock = threading.Lock()

    def load_config(self, reference: HolisticConfig | str | Path | None) -> HolisticConfig:
        """A preset name, a TOML path, TOML text or a parsed configuration."""
        if isinstance(reference, HolisticConfig):
            return reference
        if reference is None:
            reference = "default"
        if isinstance(reference, str) and not reference.strip():
            raise ConfigError(
                "an empty configuration enables no module; give a preset "
                f"({', '.join(PRESETS)}), a .toml path or TOML text",
                source="planner_config",
            )
        if isinstance(reference, Path) or (
            isinstance(reference, str)
            and "\n" not in reference
            and (reference.endswith(".toml") or Path(reference).is_file())
        ):
            return load_config(
                Path(reference), registry=self.registry, domain_settings=PortfolioSettings
            )
        if isinstance(reference, str) and _BARE_WORD.match(reference) and reference not in PRESETS:
            # a single word is never valid TOML: this is a mistyped preset name
            raise ConfigError(
                f"unknown preset {reference!r}; shipped presets: {', '.join(PRESETS)} "
                "(or give a path to a .toml file)",
                source="planner_config",
            )
        return self._parsed_text(reference)

    def _parsed_text(self, reference: str) -> HolisticConfig:
        """A preset or TOML text, parsed once per distinct text (a bucket's runs share it)."""
        with self._lock:
            known = self._parsed.get(reference)
            if known is not None:
                self._parsed.move_to_end(reference)
                return known
        if reference in PRESETS:
            parsed = parse_config(
                preset_text(reference),
                registry=self.registry,
                domain_settings=PortfolioSettings,
                source=f"preset {reference}",
            )
        else:
            parsed = parse_config(
                reference, registry=self.registry, domain_settings=PortfolioSettings
            )
        digest = config_digest(parsed)
        with self._lock:
            if reference in self._parsed:  # another thread parsed the same text meanwhile
                return self._parsed[reference]
            self._parsed[reference] = parsed
            self._parsed_digests[id(parsed)] = digest
            while len(self._parsed) > _PARSED_CACHE_SIZE:
                _, dropped = self._parsed.popitem(last=False)
                del self._parsed_digests[id(dropped)]
        return parsed

    def engine(self, reference: HolisticConfig | str | Path | None = None) -> HolisticEngine:
        """The engine for a configuration, reused while its content is unchanged."""
        config = self.load_config(reference if reference is not None else self._default)
        digest = self._parsed_digests.get(id(config)) or config_digest(config)
        with self._lock:
            engine = self._engines.get(digest)
            if engine is None:
                engine = HolisticEngine(
                    config, self.domain, registry=self.registry, events=self.events
                )
                self._engines[digest] = engine
                while len(self._engines) > _ENGINE_CACHE_SIZE:
                    self._engines.popitem(last=False)
            else:
                self._engines.move_to_end(digest)
        return engine

    def run(
        self,
        objective: str,
        context: Mapping[str, Any],
        *,
        config: HolisticConfig | str | Path | None = None,
        progress: Progress | None = None,
        run_id: str | None = None,
        run: Run | None = None,
        explain: bool = False,
    ) -> EngineResult:
        """Plan with full detail (simulation, counts, warnings); `run` as in `plan`. With
        `explain` (or `run.explain`, or the context's `planner_explain`), the result carries
        an explanation of the plan, and so does the plan."""
        raw = dict(context)
        named = _reference(raw.pop(CONFIG_CONTEXT_KEY, None))  # never part of the portfolio
        explain = _explain_asked(raw.pop(EXPLAIN_CONTEXT_KEY, False)) or explain
        reference = config
        if reference is None and run is not None:
            reference = _reference(run.config)  # a bucket's, or the one a user named
        if reference is None:
            reference = named
        engine = self.engine(reference)
        return engine.run(
            objective,
            raw,
            planner_name=self.name,
            planner_version=self.version,
            progress=progress,
            run_id=run_id,
            run=run,
            explain=explain,
        )

    def plan(self, objective: str, context: Mapping[str, Any], *, run: Run | None = None) -> Plan:
        """The run protocol: `run.config` chooses the configuration, the run's deadline is
        checked between stages, module and progress events reach the run, and `run.explain`
        attaches an explanation to the plan."""
        return self.run(objective, context, run=run).plan

    def self_test(self) -> None:
        """The shipped presets parse and every module they enable loads."""
        for name in PRESETS:
            self.engine(name)


def _reference(chosen: object) -> HolisticConfig | str | Path | None:
    """A configuration a request chose; a user names it, so a wrong type is the caller's."""
    if chosen is None or isinstance(chosen, HolisticConfig | str | Path):
        return chosen
    raise ContextError(
        CONFIG_CONTEXT_KEY,
        "must be a preset name (" + ", ".join(PRESETS) + "), a path to a TOML file or "
        f"TOML text, got {type(chosen).__name__}",
    )


def _explain_asked(asked: object) -> bool:
    """The context's `planner_explain`: a user writes it, so a wrong type is the caller's."""
    if isinstance(asked, bool):
        return asked
    raise ContextError(EXPLAIN_CONTEXT_KEY, f"must be true or false, got {type(asked).__name__}")
