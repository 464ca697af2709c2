"""What the factory tells operators: per-planner stats, one planner's description, readiness
with suggestions, and the diagnostics document (JSON, text, or a file)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from planforge.contract import ANY_CONTEXT
from planforge.errors import PlannerNotFound
from planforge.factory._generations import Generations
from planforge.factory._loader import Loader
from planforge.factory._registry import RecordStatus
from planforge.factory._selector import Selector

__all__ = ["Health"]

_DIAGNOSTIC_PROFILES = 25


class Health:
    """Reads the other parts; changes nothing but the statuses of planners another process
    has passed meanwhile."""

    def __init__(
        self,
        generations: Generations,
        loader: Loader,
        selector: Selector,
        *,
        cache_dir: Path,
        state_dir: Path,
    ) -> None:
        self._generations = generations
        self._loader = loader
        self._selector = selector
        self._settings = generations.settings
        self._cache_dir = cache_dir
        self._state_dir = state_dir

    def planner_stats(self, name: str | None = None) -> dict[str, Any]:
        """Invocations, failures, mean/p50/p95 duration and reliability, per planner."""
        generation = self._generations.current()
        names = [name] if name is not None else sorted(generation.records)
        self._generations.note_passes(
            generation.records[n] for n in names if n in generation.records
        )
        stats: dict[str, Any] = {}
        for planner_name in names:
            record = generation.records.get(planner_name)
            if record is None:
                raise PlannerNotFound(planner_name, tuple(generation.selectable_names()))
            stats[planner_name] = {
                **record.stats.summary(),
                "reliability": round(record.reliability.value(), 6),
                "status": str(record.status),
            }
        return stats

    def describe_planner(self, name: str) -> dict[str, Any]:
        generation = self._generations.current()
        record = generation.records.get(name)
        if record is None:
            raise PlannerNotFound(name, tuple(generation.selectable_names()))
        self._generations.note_passes([record])
        description = record.describe()
        kind = record.spec.context_kind
        # "any" can have no validator: no need to read the context kinds' entry points
        contexts = self._generations.contexts
        description["context_validator"] = None if kind == ANY_CONTEXT else contexts.target(kind)
        entry = self._generations.quarantine.get(name)
        description["quarantine"] = (
            {"reason": entry.reason, "since": entry.since, "error_type": entry.error_type}
            if entry is not None
            else None
        )
        return description

    def health_check(self, min_required: int = 1) -> dict[str, Any]:
        """Ready when at least `min_required` planners are active or unchecked (selectable:
        an unchecked one is checked on first use); `active` counts only those the sandbox has
        passed (or that need no check), `unchecked` the rest."""
        generation = self._generations.current()
        records = generation.records
        self._generations.note_passes(records.values())
        usable = generation.selectable_names()
        unchecked = [name for name in usable if records[name].status is RecordStatus.UNCHECKED]
        quarantined = sorted(
            name for name, r in records.items() if r.status is RecordStatus.QUARANTINED
        )
        problems = generation.discovery.problems if generation.discovery is not None else ()
        failures = len(problems) + sum(1 for r in records.values() if r.error is not None)
        reliabilities = [records[name].reliability.value() for name in usable]
        average = sum(reliabilities) / len(reliabilities) if reliabilities else 0.0
        minimum = self._settings.min_reliability
        selectable = [name for name in usable if records[name].reliability.value() >= minimum]
        suggestions = self._suggestions(
            records=len(records),
            quarantined=len(quarantined),
            unchecked=len(unchecked),
            none_selectable=bool(usable) and not selectable,
            problems=len(problems),
        )
        return {
            "ready": len(usable) >= min_required,
            "active": len(usable) - len(unchecked),
            "unchecked": len(unchecked),
            "selectable": len(selectable),
            "quarantined": len(quarantined),
            "records": len(records),
            "import_failures": failures,
            "avg_reliability": round(average, 6),
            "min_reliability_filter": minimum,
            "suggestions": suggestions,
        }

    def _suggestions(
        self,
        *,
        records: int,
        quarantined: int,
        unchecked: int,
        none_selectable: bool,
        problems: int,
    ) -> list[str]:
        suggestions: list[str] = []
        if not records:
            suggestions.append(
                "No planner found: install a plugin distribution with a `planforge.planners` "
                "entry point, or set FACTORY_PLUGIN_DIRS."
            )
        if quarantined:
            suggestions.append(
                f"{quarantined} planner(s) quarantined: see `planforge quarantine list`, "
                "fix them and run `planforge quarantine release NAME`."
            )
        if unchecked:
            suggestions.append(
                f"{unchecked} planner(s) not checked in the sandbox yet: each is checked on "
                "first use; run `planforge planners check` to check them now."
            )
        if none_selectable:
            suggestions.append(
                f"Every active or unchecked planner is below FACTORY_MIN_RELIABILITY="
                f"{self._settings.min_reliability}: declare reliability_score or lower the "
                "minimum."
            )
        if problems:
            suggestions.append(f"{problems} discovery problem(s): see `planforge diagnostics`.")
        return suggestions

    def diagnostics_json(self) -> dict[str, Any]:
        generation = self._generations.current()
        self._generations.note_passes(generation.records.values())
        by_status = {
            status: sorted(n for n, r in generation.records.items() if r.status is status)
            for status in (RecordStatus.ACTIVE, RecordStatus.UNCHECKED)
        }
        selector = self._selector
        return {
            "timestamp": time.time(),
            "generation": generation.number,
            "stats": self.planner_stats(),
            "active": by_status[RecordStatus.ACTIVE],
            "unchecked": by_status[RecordStatus.UNCHECKED],
            "records": {
                name: record.describe() for name, record in sorted(generation.records.items())
            },
            "discovery": self._discovery_json(),
            "quarantined": self._loader.list_quarantined(),
            "health": self.health_check(),
            "selection_profiles": selector.selection_profiles.snapshot(_DIAGNOSTIC_PROFILES),
            "instantiation_profiles": self._loader.instantiation_profiles.snapshot(
                _DIAGNOSTIC_PROFILES
            ),
            "plan_profiles": selector.plan_profiles.snapshot(_DIAGNOSTIC_PROFILES),
            "boosts": {
                "deep_index_cap_boost": self._settings.deep_index_cap_boost,
                "hotspot_cap_boost": self._settings.hotspot_cap_boost,
                "hotspot_threshold": self._settings.hotspot_threshold,
                "objective_weight": self._settings.objective_weight,
            },
            "settings": {
                "min_reliability": self._settings.min_reliability,
                "default_reliability": self._settings.default_reliability,
                "allowed_planners": list(self._settings.allowed_planners),
                "exclude_planners": list(self._settings.exclude_planners),
                "plugin_dirs": [str(p) for p in self._settings.plugin_dirs],
                "sandbox": self._settings.sandbox,
                "sandbox_timeout_s": self._settings.sandbox_timeout_s,
                "cache_dir": str(self._cache_dir),
                "state_dir": str(self._state_dir),
            },
        }

    def _discovery_json(self) -> dict[str, Any]:
        discovery = self._generations.current().discovery
        contexts = self._generations.contexts
        return {
            "fingerprint": discovery.fingerprint if discovery else None,
            "from_cache": discovery.from_cache if discovery else None,
            "duration_ms": discovery.duration_ms if discovery else None,
            "problems": [
                {"source": p.source, "origin": p.origin, "target": p.target, "reason": p.reason}
                for p in (discovery.problems if discovery else ())
            ],
            "context_kinds": {k: contexts.target(k) for k in contexts.names()},
            "context_kind_problems": list(contexts.problems()),
            "shadowed": [
                {
                    "name": s.name,
                    "winner": s.winner_target,
                    "winner_source": s.winner_source,
                    "loser": s.loser_target,
                    "loser_source": s.loser_source,
                }
                for s in (discovery.shadowed if discovery else ())
            ],
        }

    def diagnostics_report(self) -> str:
        """The diagnostics as plain text for a person."""
        data = self.diagnostics_json()
        health = data["health"]
        lines = [
            f"planforge diagnostics (generation {data['generation']})",
            f"  ready={health['ready']} active={health['active']} "
            f"unchecked={health['unchecked']} quarantined={health['quarantined']} "
            f"records={health['records']} "
            f"import_failures={health['import_failures']}",
            f"  discovery: {data['discovery']['duration_ms']} ms, "
            f"from_cache={data['discovery']['from_cache']}",
            "  planners:",
        ]
        for name, record in data["records"].items():
            stats = record["stats"]
            lines.append(
                f"    {name} [{record['status']}] v{record['version']} tier={record['tier']} "
                f"reliability={record['reliability']:.3f} invocations={stats['invocations']} "
                f"failures={stats['failures']} p50={stats['p50_ms']}ms"
            )
        for problem in data["discovery"]["problems"]:
            lines.append(f"  problem: {problem['target']}: {problem['reason']}")
        for shadow in data["discovery"]["shadowed"]:
            lines.append(
                f"  shadowed: {shadow['name']} from {shadow['loser']} ({shadow['loser_source']}) "
                f"lost to {shadow['winner']} ({shadow['winner_source']})"
            )
        for entry in data["quarantined"]:
            lines.append(f"  quarantined: {entry['planner_name']}: {entry['reason']}")
        lines.extend(f"  suggestion: {text}" for text in health["suggestions"])
        return "\n".join(lines)

    def export_diagnostics(self, path: str | Path) -> Path:
        """Write the diagnostics JSON atomically and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.diagnostics_json(), indent=2, default=str))
        os.replace(temporary, target)
        return target
