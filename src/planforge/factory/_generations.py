"""Generations: what discovery found, turned into records with a status each.

A warm `discover()` in a new process costs the disk-cache read plus one record per planner:
everything heavier (ranking terms, reliabilities, breakers) waits for the first selection or
for the one planner a caller asks about.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from planforge.contract import ANY_CONTEXT, Planner, PlannerSpec
from planforge.errors import PlannerNotAllowed, PlannerNotFound
from planforge.factory._collector import collector_paused
from planforge.factory._contexts import ContextKinds
from planforge.factory._discovery import Discovery, DiscoveryResult, IntrospectionTarget
from planforge.factory._passes import PassStore, SandboxPass, current_pass, unchecked_or_active
from planforge.factory._quarantine import QuarantineEntry, QuarantineStore, file_fingerprint
from planforge.factory._ranking import Candidate, RankingIndex, RankingWeights
from planforge.factory._registry import (
    SELECTABLE,
    Generation,
    PlannerRecord,
    PlannerVitals,
    RecordStatus,
)
from planforge.logs import get_logger
from planforge.settings import FactorySettings

__all__ = ["Generations"]

_log = get_logger("factory")

# What a new generation keeps of the record it replaces when the spec did not change.
_KEPT_FIELDS = (
    "cls",
    "instance",
    "sandbox_checked",
    "sandbox_passed_at",
    "self_test_passed",
    "instantiated_at",
    "instantiation_ms",
    "last_access",
    "error",
)


class Generations:
    """The current generation and how the next one is made; thread-safe.

    `state_lock` is taken first, a planner's lock after it, `status_lock` last of all.
    """

    def __init__(
        self,
        settings: FactorySettings,
        *,
        search_path: Sequence[str] | None,
        cache_dir: Path,
        state_dir: Path,
        clock: Callable[[], float],
        contexts: ContextKinds,
        introspect: Callable[[IntrospectionTarget], Mapping[str, Any]],
    ) -> None:
        self.settings = settings
        self.contexts = contexts
        self.state_lock = threading.RLock()
        self.status_lock = threading.Lock()  # taken last: never hold another lock inside it
        self.vitals = PlannerVitals(settings, clock)
        self.quarantine = QuarantineStore(state_dir / "quarantine.json")
        self.passes = PassStore(state_dir / "sandbox_passes.json")
        self.code_classes: dict[str, type[Planner]] = {}
        #: planners left out of selection by their breaker; read and written under state_lock
        self.breaker_blocked: set[str] = set()
        self._code_specs: dict[str, PlannerSpec] = {}
        self._weights = RankingWeights.from_settings(settings)
        #: the current generation, None before the first discovery; a plain attribute (not a
        #: property) because `get_planner`'s hot path reads it on every call
        self.latest: Generation | None = None
        self._counter = 0
        self._discovery = Discovery(
            settings, search_path=search_path, cache_dir=cache_dir, introspect=introspect
        )

    def current(self) -> Generation:
        generation = self.latest
        if generation is None:
            generation = self.refresh(force=False)
        return generation

    def register(self, cls: type[Planner]) -> PlannerSpec:
        spec = cls.spec()
        with self.state_lock:
            self.code_classes[spec.name] = cls
            self._code_specs[spec.name] = spec
        self.refresh(force=False, new_generation=True)
        return spec

    def refresh(self, *, force: bool, new_generation: bool = False) -> Generation:
        """Discover (from the disk cache unless `force`) and swap in a new generation when
        something changed or `new_generation` asks for one."""
        if force:
            self.contexts.refresh()  # a forced rediscovery reads the context kinds again too
        with self.state_lock, collector_paused():  # hundreds of specs and records, no cycles
            code_specs = [self._code_specs[name] for name in sorted(self._code_specs)]
            result = self._discovery.discover(force=force, code_specs=code_specs)
            latest = self.latest
            if (
                latest is not None
                and not new_generation
                and latest.discovery is not None
                and latest.discovery.fingerprint == result.fingerprint
                and latest.discovery.specs == result.specs
            ):
                return latest
            generation = self._build(result, keep=None if new_generation else latest)
            self.latest = generation
            _log.info(
                "discovered planners",
                generation=generation.number,
                planners=len(generation.records),
                selectable=len(generation.selectable_names()),
                problems=len(result.problems),
                from_cache=result.from_cache,
                duration_ms=round(result.duration_ms, 3),
            )
            return generation

    def _build(self, result: DiscoveryResult, keep: Generation | None) -> Generation:
        records = self._records(result.specs, keep.records if keep is not None else {})
        kinds = {r.spec.context_kind for r in records.values() if r.status in SELECTABLE}
        self._counter += 1
        instances = (
            {name: r.instance for name, r in records.items() if r.instance is not None}
            if keep is not None
            else {}
        )
        return Generation(
            number=self._counter,
            records=records,
            index_builder=self._index_for,
            discovery=result,
            instances=instances,
            created_at=time.time(),
            context_kinds=tuple(sorted(kinds - {ANY_CONTEXT})),
        )

    def _records(
        self, specs: Iterable[PlannerSpec], kept: Mapping[str, PlannerRecord]
    ) -> dict[str, PlannerRecord]:
        """A record per spec with its status, keeping what `kept` knew of an unchanged spec.

        A warm start makes hundreds of records: with no allow or exclude list, a planner with
        no quarantine entry, no sandbox pass and no error gets the plain status, which depends
        only on its source and whether it was checked here, so it is worked out once for each.
        """
        quarantined = {entry.planner_name: entry for entry in self.quarantine.entries()}
        passes = self.passes.snapshot()
        settings = self.settings
        plain = not settings.allowed_planners and not settings.exclude_planners
        plain_status: dict[tuple[str, bool], tuple[RecordStatus, str | None]] = {}
        records: dict[str, PlannerRecord] = {}
        for spec in specs:
            record = PlannerRecord(spec, self.vitals)
            previous = kept.get(spec.name)
            if previous is not None and previous.spec == spec:
                for field in _KEPT_FIELDS:
                    setattr(record, field, getattr(previous, field))
            if (
                plain
                and record.error is None
                and spec.name not in quarantined
                and (not passes or spec.target not in passes)
            ):
                key = (spec.source, record.sandbox_checked)
                status = plain_status.get(key)
                if status is None:
                    status = plain_status[key] = unchecked_or_active(
                        spec, sandbox=settings.sandbox, checked_here=key[1], passed=None
                    )
            else:
                status = self._status(record, quarantined, passes)
            record.status, record.status_reason = status
            records[spec.name] = record
        return records

    def _status(
        self,
        record: PlannerRecord,
        quarantined: Mapping[str, QuarantineEntry],
        passes: Mapping[str, SandboxPass],
    ) -> tuple[RecordStatus, str | None]:
        """The first that applies: not allowed, excluded, quarantined, failed, then the
        sandbox's word (`active` or `unchecked`)."""
        name = record.spec.name
        allowed = self.settings.allowed_planners
        if allowed and name not in allowed:
            return RecordStatus.NOT_ALLOWED, "not allowed by ALLOWED_PLANNERS"
        if name in self.settings.exclude_planners:
            return RecordStatus.NOT_ALLOWED, "excluded by FACTORY_EXCLUDE_PLANNERS"
        if name in quarantined:
            entry = self.current_quarantine(record.spec, quarantined)
            if entry is not None:
                return RecordStatus.QUARANTINED, f"quarantined: {entry.reason}"
        if record.error is not None:
            return RecordStatus.FAILED, record.error
        return self.check_status(record, passes)

    def _index_for(self, generation: Generation) -> RankingIndex:
        """Build `generation`'s ranking index from its records as they stand now."""
        with self.state_lock:
            if generation.built_index is not None:
                return generation.built_index
            excluded: dict[str, str] = {}
            candidates: list[Candidate] = []
            for name, record in generation.records.items():
                if not record.status.selectable and record.status_reason:
                    excluded[name] = record.status_reason
                elif (reason := self.vitals.breaker_exclusion(name)) is not None:
                    excluded[name] = reason
                    self.breaker_blocked.add(name)
                reliability = record.reliability.value()
                candidates.append(Candidate(spec=record.spec, reliability=reliability))
            index = RankingIndex(candidates, self._weights, excluded)
            generation.built_index = index
            return index

    # ------------------------------------------------------------------ quarantine and passes

    def current_quarantine(
        self, spec: PlannerSpec, entries: Mapping[str, QuarantineEntry] | None = None
    ) -> QuarantineEntry | None:
        """The quarantine entry that still applies to this spec (its file is unchanged)."""
        entry = entries.get(spec.name) if entries is not None else self.quarantine.get(spec.name)
        if entry is None or entry.module != spec.module:
            return None
        if self.quarantine.is_current(entry, file_fingerprint(spec.path)):
            return entry
        return None

    def check_status(
        self, record: PlannerRecord, passes: Mapping[str, SandboxPass]
    ) -> tuple[RecordStatus, str | None]:
        """`active` or `unchecked`, for a planner nothing else excludes."""
        spec = record.spec
        passed = None
        if (
            spec.target in passes
            and self.settings.sandbox
            and not record.sandbox_checked
            and spec.source != "code"
        ):
            passed = current_pass(spec, passes, lambda: file_fingerprint(spec.path))
            if passed is not None:
                record.sandbox_passed_at = passed.passed_at
        return unchecked_or_active(
            spec, sandbox=self.settings.sandbox, checked_here=record.sandbox_checked, passed=passed
        )

    def note_passes(self, records: Iterable[PlannerRecord]) -> None:
        """Show as active the unchecked planners another process has passed meanwhile."""
        unchecked = [record for record in records if record.status is RecordStatus.UNCHECKED]
        if not unchecked:
            return
        passes = self.passes.snapshot()
        for record in unchecked:
            status, reason = self.check_status(record, passes)
            with self.status_lock:
                if record.status is RecordStatus.UNCHECKED:
                    record.status, record.status_reason = status, reason

    def lookup(self, name: str) -> PlannerRecord:
        """The current record of `name`; raises `PlannerNotFound` or `PlannerNotAllowed`."""
        generation = self.current()
        record = generation.records.get(name)
        if record is None:
            raise PlannerNotFound(name, tuple(generation.selectable_names()))
        if record.status is RecordStatus.NOT_ALLOWED:
            variable = (
                "FACTORY_EXCLUDE_PLANNERS"
                if name in self.settings.exclude_planners
                else "ALLOWED_PLANNERS"
            )
            raise PlannerNotAllowed(name, variable)
        return record
