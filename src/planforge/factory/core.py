"""`PlannerFactory`: discovery, sandboxed loading, explained selection and telemetry together.

Two factories share nothing. Lock order is the state lock, then a planner's lock, never the
reverse; reads take the current generation without locking.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from planforge.contract import ANY_CONTEXT, Plan, Planner, PlannerSpec
from planforge.errors import (
    InvalidContext,
    NoActivePlannersError,
    PlanExecutionError,
    PlannerError,
    PlannerInstantiationError,
    PlannerNotAllowed,
    PlannerNotFound,
    PlannerQuarantined,
    SandboxError,
)
from planforge.factory.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from planforge.factory.contexts import ContextKinds, ContextValidator, admit_context
from planforge.factory.discovery import Discovery, DiscoveryResult, IntrospectionTarget
from planforge.factory.passes import (
    SANDBOX_OFF_CHECK,
    PassStore,
    SandboxPass,
    check_result,
    current_pass,
    unchecked_or_active,
)
from planforge.factory.quarantine import QuarantineEntry, QuarantineStore, file_fingerprint
from planforge.factory.ranking import (
    Candidate,
    RankingIndex,
    RankingWeights,
    Selection,
    SelectionRequest,
)
from planforge.factory.registry import Generation, PlannerRecord, RecordStatus
from planforge.factory.reliability import DecayingReliability
from planforge.factory.sandbox import ImportTarget, Sandbox, SandboxReport
from planforge.factory.telemetry import PlannerStats, ProfileRing
from planforge.logs import get_logger
from planforge.settings import FactorySettings, load_settings

__all__ = ["PlannerFactory"]

_T = TypeVar("_T")
_log = get_logger("factory")
_RELIABILITY_REFRESH_S = 1.0
_DIAGNOSTIC_PROFILES = 25


def _default_dir(kind: str) -> Path:
    import platformdirs

    if kind == "cache":
        return Path(platformdirs.user_cache_dir("planforge"))
    return Path(platformdirs.user_state_dir("planforge"))


class PlannerFactory:
    """Finds planners, picks the best one for a request and explains why, loads it safely."""

    def __init__(
        self,
        settings: FactorySettings | None = None,
        *,
        search_path: Sequence[str] | None = None,
        cache_dir: Path | None = None,
        state_dir: Path | None = None,
        clock: Any = time.monotonic,
        sleep: Any = time.sleep,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._search_path = tuple(search_path) if search_path is not None else None
        self.cache_dir = cache_dir or self.settings.cache_dir or _default_dir("cache")
        self.state_dir = state_dir or self.settings.state_dir or _default_dir("state")
        self._clock = clock
        self._sleep = sleep
        self._state_lock = threading.RLock()
        self._weights = RankingWeights.from_settings(self.settings)
        self._breaker_config = BreakerConfig.from_settings(self.settings)
        self._code_classes: dict[str, type[Planner]] = {}
        self._code_specs: dict[str, PlannerSpec] = {}
        self._reliability: dict[str, DecayingReliability] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stats: dict[str, PlannerStats] = {}
        self._observed: set[str] = set()
        self._breaker_blocked: set[str] = set()
        self._last_reliability_refresh = 0.0
        self._generation: Generation | None = None
        self._generation_counter = 0
        self._instances: dict[str, Planner] = {}
        self._sandbox: Sandbox | None = None
        self._sandbox_lock = threading.Lock()
        self._quarantine = QuarantineStore(self.state_dir / "quarantine.json")
        self._passes = PassStore(self.state_dir / "sandbox_passes.json")
        self._status_lock = threading.Lock()  # taken last: never hold another lock inside it
        self._selection_profiles = ProfileRing(self.settings.max_profiles)
        self._instantiation_profiles = ProfileRing(self.settings.max_profiles)
        self._plan_profiles = ProfileRing(self.settings.max_profiles)
        self._heal_lock = threading.Lock()
        self._last_heal: float | None = None
        self._heal_thread: threading.Thread | None = None
        self._discovery = Discovery(
            self.settings,
            search_path=self._search_path,
            cache_dir=self.cache_dir,
            introspect=self._introspect,
        )
        self.contexts = ContextKinds(self._search_path)

    # ------------------------------------------------------------------ discovery

    def discover(self, *, force: bool = False) -> list[PlannerSpec]:
        """Find every planner (cached on disk by fingerprint) and return their specs by name."""
        generation = self._refresh(force=force)
        return [record.spec for _, record in sorted(generation.records.items())]

    def refresh_metadata(self) -> list[PlannerSpec]:
        """Discover again, ignoring the disk cache."""
        return self.discover(force=True)

    def reload_planners(self) -> list[str]:
        """Rediscover and start a new generation: every planner is built again on next use."""
        generation = self._refresh(force=True, new_generation=True)
        return generation.selectable_names()

    def register_context_kind(self, kind: str, validator: ContextValidator) -> None:
        """Register a context kind's validator from code (it beats an entry point)."""
        self.contexts.register(kind, validator)

    def register(self, cls: type[Planner]) -> PlannerSpec:
        """Register a class from code; it wins over a plugin of the same name."""
        spec = cls.spec()
        with self._state_lock:
            self._code_classes[spec.name] = cls
            self._code_specs[spec.name] = spec
        self._refresh(force=False, new_generation=True)
        return spec

    def _current(self) -> Generation:
        generation = self._generation
        if generation is None:
            generation = self._refresh(force=False)
        return generation

    def _refresh(self, *, force: bool, new_generation: bool = False) -> Generation:
        if force:
            self.contexts.refresh()  # a forced rediscovery reads the context kinds again too
        with self._state_lock:
            code_specs = [self._code_specs[name] for name in sorted(self._code_specs)]
            result = self._discovery.discover(force=force, code_specs=code_specs)
            current = self._generation
            if (
                current is not None
                and not new_generation
                and current.discovery is not None
                and current.discovery.fingerprint == result.fingerprint
                and current.discovery.specs == result.specs
            ):
                return current
            generation = self._build_generation(result, keep=None if new_generation else current)
            self._generation = generation
            self._instances = generation.instances
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

    def _record_for(self, spec: PlannerSpec, keep: Generation | None) -> PlannerRecord:
        name = spec.name
        reliability = self._reliability.get(name)
        prior = (
            spec.reliability_score
            if spec.reliability_score is not None
            else self.settings.default_reliability
        )
        if reliability is None or reliability.prior != prior:
            reliability = DecayingReliability(
                prior=prior,
                prior_weight=self.settings.reliability_prior_weight,
                half_life_s=self.settings.reliability_half_life_s,
                clock=self._clock,
            )
            self._reliability[name] = reliability
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, self._breaker_config, clock=self._clock)
            self._breakers[name] = breaker
        stats = self._stats.get(name)
        if stats is None:
            stats = PlannerStats(window=self.settings.stats_window)
            self._stats[name] = stats
        record = PlannerRecord(spec=spec, reliability=reliability, breaker=breaker, stats=stats)
        previous = keep.records.get(name) if keep is not None else None
        if previous is not None and previous.spec == spec:
            record.cls = previous.cls
            record.instance = previous.instance
            record.sandbox_checked = previous.sandbox_checked
            record.sandbox_passed_at = previous.sandbox_passed_at
            record.self_test_passed = previous.self_test_passed
            record.instantiated_at = previous.instantiated_at
            record.instantiation_ms = previous.instantiation_ms
            record.last_access = previous.last_access
            record.error = previous.error
        return record

    def _build_generation(self, result: DiscoveryResult, keep: Generation | None) -> Generation:
        allowed = set(self.settings.allowed_planners)
        excluded_names = set(self.settings.exclude_planners)
        records: dict[str, PlannerRecord] = {}
        excluded: dict[str, str] = {}
        candidates: list[Candidate] = []
        quarantined = {entry.planner_name: entry for entry in self._quarantine.entries()}
        passes = self._passes.snapshot()
        for spec in result.specs:
            record = self._record_for(spec, keep)
            records[spec.name] = record
            if allowed and spec.name not in allowed:
                record.status, record.status_reason = (
                    RecordStatus.NOT_ALLOWED,
                    "not allowed by ALLOWED_PLANNERS",
                )
            elif spec.name in excluded_names:
                record.status, record.status_reason = (
                    RecordStatus.NOT_ALLOWED,
                    "excluded by FACTORY_EXCLUDE_PLANNERS",
                )
            elif (entry := self._current_quarantine(spec, quarantined)) is not None:
                record.status = RecordStatus.QUARANTINED
                record.status_reason = f"quarantined: {entry.reason}"
            elif record.error is not None:
                record.status, record.status_reason = RecordStatus.FAILED, record.error
            else:
                record.status, record.status_reason = self._check_status(record, passes)
            if not record.status.selectable and record.status_reason:
                excluded[spec.name] = record.status_reason
            elif not self._breaker_permits(record):
                excluded[spec.name] = self._breaker_reason(record)
                self._breaker_blocked.add(spec.name)
            candidates.append(Candidate(spec=spec, reliability=record.reliability.value()))
        index = RankingIndex(candidates, self._weights, excluded)
        kinds = {r.spec.context_kind for r in records.values() if r.status.selectable}
        self._generation_counter += 1
        instances = (
            {name: r.instance for name, r in records.items() if r.instance is not None}
            if keep is not None
            else {}
        )
        return Generation(
            number=self._generation_counter,
            records=records,
            index=index,
            discovery=result,
            instances=instances,
            created_at=time.time(),
            context_kinds=tuple(sorted(kinds - {ANY_CONTEXT})),
        )

    def _introspect(self, target: IntrospectionTarget) -> Mapping[str, Any]:
        """Read non-literal metadata by importing the module in the sandbox, never here."""
        report = self._sandbox_client().check(
            ImportTarget(
                module=target.module,
                qualname=target.qualname,
                path=target.path,
                search_path=self._search_path or (),
            ),
            self_test=False,
            instantiate=False,
        )
        return report.metadata or {}

    # ------------------------------------------------------------------ quarantine

    def _current_quarantine(
        self, spec: PlannerSpec, entries: Mapping[str, QuarantineEntry] | None = None
    ) -> QuarantineEntry | None:
        """The quarantine entry that still applies to this spec (its file is unchanged)."""
        entry = entries.get(spec.name) if entries is not None else self._quarantine.get(spec.name)
        if entry is None:
            return None
        if entry.module != spec.module:
            return None
        if self._quarantine.is_current(entry, file_fingerprint(spec.path)):
            return entry
        return None

    def _check_status(
        self, record: PlannerRecord, passes: Mapping[str, SandboxPass]
    ) -> tuple[RecordStatus, str | None]:
        """`active` or `unchecked`, for a planner nothing else excludes."""
        spec = record.spec
        passed = None
        if self.settings.sandbox and not record.sandbox_checked and spec.source != "code":
            passed = current_pass(spec, passes, lambda: file_fingerprint(spec.path))
            if passed is not None:
                record.sandbox_passed_at = passed.passed_at
        return unchecked_or_active(
            spec, sandbox=self.settings.sandbox, checked_here=record.sandbox_checked, passed=passed
        )

    def _note_passes(self, records: Iterable[PlannerRecord]) -> None:
        """Show as active the unchecked planners another process has passed meanwhile."""
        unchecked = [record for record in records if record.status is RecordStatus.UNCHECKED]
        if not unchecked:
            return
        passes = self._passes.snapshot()
        for record in unchecked:
            status, reason = self._check_status(record, passes)
            with self._status_lock:
                if record.status is RecordStatus.UNCHECKED:
                    record.status, record.status_reason = status, reason

    def list_quarantined(self) -> list[dict[str, Any]]:
        return [
            {
                "planner_name": entry.planner_name,
                "module": entry.module,
                "reason": entry.reason,
                "error_type": entry.error_type,
                "since": entry.since,
                "path": entry.path,
                "current": self._quarantine.is_current(entry, file_fingerprint(entry.path)),
            }
            for entry in self._quarantine.entries()
        ]

    def release_quarantine(self, name: str) -> bool:
        """Lift a quarantine; the planner is checked again in the sandbox on next use."""
        released = self._quarantine.release(name)
        if released:
            _log.info("quarantine released", planner=name)
            with self._state_lock:
                if self._generation is not None and name in self._generation.records:
                    self._refresh(force=False, new_generation=True)
        return released

    def _quarantine_planner(self, record: PlannerRecord, error: PlannerError) -> None:
        reason = getattr(error, "reason", None) or error.message.splitlines()[0]
        entry = QuarantineEntry(
            planner_name=record.name,
            module=record.spec.module,
            reason=str(reason),
            error_type=type(error).__name__,
            since=time.time(),
            fingerprint=file_fingerprint(record.spec.path),
            path=record.spec.path,
        )
        self._quarantine.add(entry)
        with self._status_lock:
            record.status = RecordStatus.QUARANTINED
            record.status_reason = f"quarantined: {entry.reason}"
        generation = self._generation
        if generation is not None and generation.records.get(record.name) is record:
            generation.index.set_excluded(record.name, record.status_reason)
        _log.warning(
            "planner quarantined",
            planner=record.name,
            module=record.spec.module,
            reason=entry.reason,
            error_type=entry.error_type,
        )

    # ------------------------------------------------------------------ loading

    def _sandbox_client(self) -> Sandbox:
        with self._sandbox_lock:
            if self._sandbox is None:
                self._sandbox = Sandbox(
                    timeout_s=self.settings.sandbox_timeout_s,
                    max_memory_mb=self.settings.sandbox_max_memory_mb,
                    max_output_bytes=self.settings.sandbox_max_output_bytes,
                )
            return self._sandbox

    def close(self) -> None:
        """Stop the sandbox helper process; the factory still works and restarts it on need."""
        with self._sandbox_lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None

    def __enter__(self) -> PlannerFactory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _lookup(self, name: str) -> PlannerRecord:
        generation = self._current()
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

    def _load_class(self, record: PlannerRecord) -> type[Planner]:
        spec = record.spec
        if record.cls is not None:
            return record.cls
        if spec.source == "code":
            cls = self._code_classes[spec.name]
            record.cls = cls
            return cls
        entry = self._current_quarantine(spec)
        if entry is not None:
            raise PlannerQuarantined(spec.name, entry.reason, entry.since)
        if self.settings.sandbox and not record.sandbox_checked:
            self._sandbox_check(record)
        try:
            module = self._import_module(spec)
            target: Any = module
            for part in spec.qualname.split("."):
                target = getattr(target, part)
        except Exception as exc:
            error = PlannerInstantiationError(
                spec.name, spec.module, f"import failed: {type(exc).__name__}: {exc}"
            )
            self._quarantine_planner(record, error)
            raise error from exc
        if not isinstance(target, type) or not callable(getattr(target, "plan", None)):
            error = PlannerInstantiationError(
                spec.name, spec.module, f"{spec.qualname} is not a planner class"
            )
            self._quarantine_planner(record, error)
            raise error
        record.cls = target
        return target

    def _sandbox_check(self, record: PlannerRecord) -> SandboxReport:
        """Check the planner in the sandbox: a failure quarantines it, a pass is remembered
        (for other processes too) and makes an unchecked planner active."""
        spec = record.spec
        fingerprint = file_fingerprint(spec.path)  # before the check: a later edit is unchecked
        try:
            report = self._sandbox_client().check(
                ImportTarget(
                    module=spec.module,
                    qualname=spec.qualname,
                    path=spec.path if spec.source == "directory" else None,
                    search_path=self._search_path or (),
                    planner_name=spec.name,
                )
            )
        except SandboxError as exc:
            exc.planner_name = spec.name
            self._quarantine_planner(record, exc)
            raise
        record.sandbox_checked = True
        record.self_test_passed = report.self_test != "failed"
        record.sandbox_passed_at = time.time()
        passed = SandboxPass(
            spec.target, fingerprint, spec.name, record.sandbox_passed_at, report.self_test
        )
        try:
            self._passes.add(passed)
        except OSError as exc:  # only what other processes show depends on it
            _log.warning("could not record a sandbox pass", planner=spec.name, error=str(exc))
        with self._status_lock:
            if record.status is RecordStatus.UNCHECKED:
                record.status, record.status_reason = RecordStatus.ACTIVE, None
        return report

    def check_planners(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Run the sandbox check now for `names` (every discovered planner by default), in that
        order, and return each result: "passed", "quarantined" (with the reason) or "skipped"
        (not allowed, or registered in code). A planner already quarantined is not run again:
        release it first. Raises `PlannerNotFound` before checking anything if a name is
        unknown, and `PlannerError` when the sandbox is off."""
        if not self.settings.sandbox:
            raise PlannerError(SANDBOX_OFF_CHECK, where="sandbox")
        generation = self._current()
        wanted = sorted(generation.records) if names is None else list(dict.fromkeys(names))
        for name in wanted:
            if name not in generation.records:
                raise PlannerNotFound(name, tuple(sorted(generation.records)))
        return [self._check_one(generation.records[name]) for name in wanted]

    def _check_one(self, record: PlannerRecord) -> dict[str, Any]:
        result = check_result(record)
        if result["result"] is not None:
            return result
        entry = self._current_quarantine(record.spec)
        if entry is not None:
            return {
                **result,
                "result": "quarantined",
                "status": "quarantined",
                "reason": entry.reason,
            }
        started = time.perf_counter()
        with record.lock:
            try:
                report = self._sandbox_check(record)
            except SandboxError as exc:
                reason = getattr(exc, "reason", None) or exc.message
                return {**check_result(record), "result": "quarantined", "reason": reason}
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        passed = {"result": "passed", "self_test": report.self_test, "duration_ms": duration_ms}
        return {**check_result(record), **passed}

    def _import_module(self, spec: PlannerSpec) -> Any:
        if spec.source == "directory" and spec.path:
            existing = sys.modules.get(spec.module)
            if existing is not None and getattr(existing, "__file__", None) == spec.path:
                return existing
            module_spec = importlib.util.spec_from_file_location(spec.module, spec.path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {spec.path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[spec.module] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(spec.module, None)
                raise
            return module
        if self._search_path:
            for entry in reversed(self._search_path):
                if entry not in sys.path:
                    sys.path.append(entry)
        return importlib.import_module(spec.module)

    def _instantiate(self, record: PlannerRecord) -> Planner:
        cls = self._load_class(record)
        started = time.perf_counter()
        try:
            instance = cls()
        except Exception as exc:
            raise PlannerInstantiationError(
                record.name, record.spec.module, f"{type(exc).__name__}: {exc}"
            ) from exc
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if self.settings.profile_instantiation:
            self._instantiation_profiles.append(
                {
                    "planner": record.name,
                    "module": record.spec.module,
                    "duration_ms": round(elapsed_ms, 4),
                    "sandbox_checked": record.sandbox_checked,
                    "ts": time.time(),
                }
            )
        record.instantiation_ms = elapsed_ms
        return instance

    def get_planner(self, name: str) -> Planner:
        """The shared instance of a planner, built once per generation under contention."""
        instance = self._instances.get(name)
        if instance is not None:
            return instance
        return self._build_shared(name)

    def _build_shared(self, name: str) -> Planner:
        with self._state_lock:
            generation = self._current()
            record = self._lookup(name)
        with record.lock:
            if record.instance is not None:
                generation.instances.setdefault(name, record.instance)
                return record.instance
            if record.status is RecordStatus.QUARANTINED:
                entry = self._current_quarantine(record.spec)
                if entry is not None:
                    raise PlannerQuarantined(name, entry.reason, entry.since)
            instance = self._instantiate(record)
            record.instance = instance
            record.instantiated_at = time.time()
            record.last_access = record.instantiated_at
            generation.instances[name] = instance
            _log.info("planner built", planner=name, generation=generation.number)
            return instance

    def new_planner(self, name: str) -> Planner:
        """A fresh instance, for stateful planners that must not be shared between users."""
        record = self._lookup(name)
        with record.lock:
            return self._instantiate(record)

    def get_all_planners(self) -> dict[str, Planner]:
        """Build every active planner; one that fails is quarantined and left out."""
        planners: dict[str, Planner] = {}
        for name in self._current().selectable_names():
            try:
                planners[name] = self.get_planner(name)
            except PlannerError as exc:
                _log.warning("planner unavailable", planner=name, error=exc.message)
        return planners

    def list_planners(self, *, include_inactive: bool = False) -> list[str]:
        generation = self._current()
        if include_inactive:
            return sorted(generation.records)
        return generation.selectable_names()

    # ------------------------------------------------------------------ selection

    def _request(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None,
        prefer_production: bool,
        deep_context: Mapping[str, Any] | None,
        strict: bool,
        context_kind: str | None = None,
    ) -> SelectionRequest:
        return SelectionRequest(
            objective=objective,
            required_capabilities=tuple(required_capabilities or ()),
            prefer_production=prefer_production,
            deep_context=deep_context,
            strict=strict,
            context_kind=context_kind,
        )

    def _sync_runtime_state(self, generation: Generation) -> None:
        """Let decayed reliabilities and elapsed breaker waits reach the ranking index.

        Costs nothing while no planner has run; the sets are read under the state lock
        because outcomes are recorded from other threads.
        """
        if self._breaker_blocked:
            with self._state_lock:
                for name in sorted(self._breaker_blocked):
                    record = generation.records.get(name)
                    if record is None or self._breaker_permits(record):
                        self._breaker_blocked.discard(name)
                        if record is not None and record.status.selectable:
                            generation.index.set_excluded(name, None)
        if self._observed and (
            self._clock() - self._last_reliability_refresh >= _RELIABILITY_REFRESH_S
        ):
            with self._state_lock:
                self._last_reliability_refresh = self._clock()
                for name in sorted(self._observed):
                    record = generation.records.get(name)
                    if record is not None:
                        generation.index.set_reliability(name, record.reliability.value())

    def select_best_planner_name(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        self_heal_on_empty: bool | None = None,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> str:
        """The name of the best planner for the request; raises `NoActivePlannersError`.

        With `context_kind`, planners that read another kind of context are left out.
        """
        request = self._request(
            objective, required_capabilities, prefer_production, deep_context, strict, context_kind
        )
        started = time.perf_counter_ns()
        generation = self._current()
        self._sync_runtime_state(generation)
        best = generation.index.best(request)
        if best is None:
            heal = (
                self.settings.self_heal_on_empty
                if self_heal_on_empty is None
                else self_heal_on_empty
            )
            blocking = self.settings.self_heal_blocking  # non-blocking: heal for the next call
            if heal and self.self_heal(blocking=blocking)["after_active"] > 0:
                generation = self._current()
                best = generation.index.best(request)
            if best is None:
                selection = generation.index.explain(request)
                reasons = {item.name: item.reason for item in selection.exclusions}
                raise NoActivePlannersError(objective, reasons)
        name, score = best
        if self.settings.profile_selection:
            self._selection_profiles.append(
                {
                    "objective_length": len(objective),
                    "required_capabilities": list(request.required_capabilities),
                    "best": name,
                    "score": score,
                    "candidates": len(generation.records),
                    "deep_index": bool(deep_context and "deep_index_summary" in deep_context),
                    "hotspots": deep_context.get("hotspots_count") if deep_context else None,
                    "duration_us": (time.perf_counter_ns() - started) / 1000.0,
                    "ts": time.time(),
                }
            )
        return name

    def select_best_planner(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        self_heal_on_empty: bool | None = None,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> Planner:
        """The best planner's shared instance (see `select_best_planner_name`)."""
        name = self.select_best_planner_name(
            objective,
            required_capabilities,
            prefer_production,
            self_heal_on_empty,
            deep_context,
            strict=strict,
            context_kind=context_kind,
        )
        return self.get_planner(name)

    def batch_select_best_planners(
        self,
        objective: str,
        n: int = 3,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> list[str]:
        """The names of the `n` best planners, best first."""
        if n < 1:
            raise ValueError("n must be at least 1")
        request = self._request(
            objective, required_capabilities, prefer_production, deep_context, strict, context_kind
        )
        generation = self._current()
        self._sync_runtime_state(generation)
        return [name for name, _ in generation.index.top(request, n)]

    def explain_selection(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> Selection:
        """The winner, every candidate's score breakdown and every exclusion with its reason."""
        request = self._request(
            objective, required_capabilities, prefer_production, deep_context, strict, context_kind
        )
        generation = self._current()
        self._sync_runtime_state(generation)
        return generation.index.explain(request)

    # ------------------------------------------------------------------ running

    def run_plan(
        self,
        objective: str,
        context: Mapping[str, Any] | None = None,
        *,
        planner: str | None = None,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        context_kind: str | None = None,
    ) -> Plan:
        """Admit the context, select (or take `planner`), plan, and record the outcome.

        The context's kind is decided and the context validated first (`admit_context`): a
        bad context raises `InvalidContext` before any planner runs, and selection only
        considers planners that read its kind. An `InvalidContext` raised by the planner
        itself is the caller's error too: it counts neither as a failure nor as a success.
        """
        data = dict(context or {})
        kind = self.admit_context(
            objective,
            data,
            planner=planner,
            context_kind=context_kind,
            required_capabilities=required_capabilities,
            prefer_production=prefer_production,
            deep_context=deep_context,
        )
        name = planner or self.select_best_planner_name(
            objective,
            required_capabilities,
            prefer_production,
            None,
            deep_context,
            context_kind=kind,
        )
        record = self.admit(name)
        try:
            instance = self.get_planner(name)
        except BaseException:
            record.breaker.release_permission()
            raise
        record.last_access = time.time()
        started = time.perf_counter()
        try:
            plan = instance.plan(objective, data)
            if not isinstance(plan, Plan):
                raise TypeError(f"plan() returned {type(plan).__name__}, not a Plan")
        except InvalidContext as exc:
            record.breaker.release_permission()  # the caller's input: no outcome to record
            _log.info("planner rejected its context", planner=name, field=exc.field)
            raise
        except Exception as exc:
            elapsed = time.perf_counter() - started
            cause = f"{type(exc).__name__}: {exc}"
            self._record_outcome(record, elapsed, ok=False, error=cause, objective=objective)
            raise PlanExecutionError(name, cause) from exc
        elapsed = time.perf_counter() - started
        self._record_outcome(record, elapsed, ok=True, error=None, objective=objective)
        return plan

    def admit(self, name: str) -> PlannerRecord:
        """Ask the planner's circuit breaker for one call; raises `CircuitOpenError` when it
        refuses. Callers that plan outside `run_plan` (the runtime) call this first and then
        report the outcome with `record_outcome`, or `release_admission` if they never ran."""
        record = self._lookup(name)
        if not record.breaker.allow():
            raise CircuitOpenError(name, record.breaker.retry_after_s(), record.breaker.state)
        return record

    def release_admission(self, name: str, *, input_error: InvalidContext | None = None) -> None:
        """Give back a permission taken by `admit` for a call that never happened, or whose
        planner rejected its context (`input_error`): neither counts for or against it."""
        self._lookup(name).breaker.release_permission()
        if input_error is not None:
            _log.info("planner rejected its context", planner=name, field=input_error.field)

    def admit_context(
        self,
        objective: str,
        context: Mapping[str, Any],
        *,
        planner: str | None = None,
        context_kind: str | None = None,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Decide the context's kind and validate it, before anything runs.

        Raises `InvalidContext` naming the field for a bad context. Returns the kind to
        select with (`select_best_planner_name(..., context_kind=...)`), or None when
        `planner` names no usable planner (running it reports why). The rule is
        `planforge.factory.contexts.decide_context_kind`.
        """
        request = self._request(
            objective, required_capabilities, prefer_production, deep_context, False, context_kind
        )
        generation = self._current()
        self._sync_runtime_state(generation)
        return admit_context(generation, self.contexts, request, context, planner=planner)

    def record_outcome(
        self, name: str, duration_s: float, *, ok: bool, error: str | None = None
    ) -> None:
        """Feed an outcome observed elsewhere (for example a runtime engine) into reliability."""
        self._record_outcome(self._lookup(name), duration_s, ok=ok, error=error, objective=None)

    def _record_outcome(
        self,
        record: PlannerRecord,
        duration_s: float,
        *,
        ok: bool,
        error: str | None,
        objective: str | None,
    ) -> None:
        name = record.name
        record.stats.record(duration_s * 1000.0, ok=ok, error=error)
        record.reliability.record(ok)
        if ok:
            record.breaker.record_success(duration_s)
        else:
            record.breaker.record_failure(duration_s, error)
        generation = self._generation
        with self._state_lock:
            self._observed.add(name)
            if generation is not None and generation.records.get(name) is record:
                generation.index.set_reliability(name, record.reliability.value())
                if not self._breaker_permits(record):
                    self._breaker_blocked.add(name)
                    generation.index.set_excluded(name, self._breaker_reason(record))
        self._plan_profiles.append(
            {
                "planner": name,
                "ok": ok,
                "error": error,
                "duration_ms": round(duration_s * 1000.0, 4),
                "objective_length": len(objective) if objective is not None else None,
                "ts": time.time(),
            }
        )
        if not ok:
            _log.warning("plan failed", planner=name, error=error)

    @staticmethod
    def _breaker_permits(record: PlannerRecord) -> bool:
        return record.breaker.state not in (BreakerState.OPEN, BreakerState.FORCED_OPEN)

    @staticmethod
    def _breaker_reason(record: PlannerRecord) -> str:
        retry = record.breaker.retry_after_s()
        when = f" (retry in {retry:.1f} s)" if retry is not None else ""
        return f"circuit breaker {record.breaker.state}{when}"

    # ------------------------------------------------------------------ resilience

    def self_heal(self, max_attempts: int = 3, blocking: bool = True) -> dict[str, Any]:
        """Rediscover with backoff when no planner is active; 5 s cooldown between heals.

        Sleeps `min(0.2 * 2**attempt, 2.0)` between attempts, never after the last. The
        non-blocking form returns at once and heals on a background thread.
        """
        before = len(self._current().selectable_names())
        report: dict[str, Any] = {
            "before_active": before,
            "attempts": 0,
            "after_active": before,
            "cooldown_skip": False,
            "background": False,
        }
        if before > 0:
            return report
        now = self._clock()
        with self._heal_lock:
            if (
                self._last_heal is not None
                and now - self._last_heal < self.settings.self_heal_cooldown_s
            ):
                report["cooldown_skip"] = True
                return report
            self._last_heal = now
            if not blocking:
                if self._heal_thread is None or not self._heal_thread.is_alive():
                    self._heal_thread = threading.Thread(
                        target=self._heal_attempts,
                        args=(max_attempts,),
                        name="planforge-self-heal",
                        daemon=True,
                    )
                    self._heal_thread.start()
                report["background"] = True
                return report
        attempts, after = self._heal_attempts(max_attempts)
        report["attempts"] = attempts
        report["after_active"] = after
        return report

    def _heal_attempts(self, max_attempts: int) -> tuple[int, int]:
        active = 0
        attempts = 0
        for attempt in range(max_attempts):
            attempts += 1
            active = len(self._refresh(force=True, new_generation=True).selectable_names())
            _log.info("self-heal attempt", attempt=attempts, active=active)
            if active > 0:
                break
            if attempt < max_attempts - 1:
                self._sleep(min(0.2 * 2**attempt, 2.0))
        return attempts, active

    # ------------------------------------------------------------------ telemetry

    def selection_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._selection_profiles.snapshot(last)

    def instantiation_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._instantiation_profiles.snapshot(last)

    def plan_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._plan_profiles.snapshot(last)

    def planner_stats(self, name: str | None = None) -> dict[str, Any]:
        """Invocations, failures, mean/p50/p95 duration and reliability, per planner."""
        generation = self._current()
        names = [name] if name is not None else sorted(generation.records)
        self._note_passes(generation.records[n] for n in names if n in generation.records)
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
        generation = self._current()
        record = generation.records.get(name)
        if record is None:
            raise PlannerNotFound(name, tuple(generation.selectable_names()))
        self._note_passes([record])
        description = record.describe()
        description["context_validator"] = self.contexts.target(record.spec.context_kind)
        entry = self._quarantine.get(name)
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
        generation = self._current()
        records = generation.records
        self._note_passes(records.values())
        usable = generation.selectable_names()
        unchecked = [name for name in usable if records[name].status is RecordStatus.UNCHECKED]
        quarantined = sorted(
            name for name, r in records.items() if r.status is RecordStatus.QUARANTINED
        )
        problems = generation.discovery.problems if generation.discovery is not None else ()
        failures = len(problems) + sum(1 for r in records.values() if r.error is not None)
        reliabilities = [records[name].reliability.value() for name in usable]
        average = sum(reliabilities) / len(reliabilities) if reliabilities else 0.0
        selectable = [
            name
            for name in usable
            if records[name].reliability.value() >= self.settings.min_reliability
        ]
        suggestions: list[str] = []
        if not records:
            suggestions.append(
                "No planner found: install a plugin distribution with a `planforge.planners` "
                "entry point, or set FACTORY_PLUGIN_DIRS."
            )
        if quarantined:
            suggestions.append(
                f"{len(quarantined)} planner(s) quarantined: see `planforge quarantine list`, "
                "fix them and run `planforge quarantine release NAME`."
            )
        if unchecked:
            suggestions.append(
                f"{len(unchecked)} planner(s) not checked in the sandbox yet: each is checked on "
                "first use; run `planforge planners check` to check them now."
            )
        if usable and not selectable:
            suggestions.append(
                f"Every active or unchecked planner is below FACTORY_MIN_RELIABILITY="
                f"{self.settings.min_reliability}: declare reliability_score or lower the minimum."
            )
        if problems:
            suggestions.append(
                f"{len(problems)} discovery problem(s): see `planforge diagnostics`."
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
            "min_reliability_filter": self.settings.min_reliability,
            "suggestions": suggestions,
        }

    def diagnostics_json(self) -> dict[str, Any]:
        generation = self._current()
        discovery = generation.discovery
        self._note_passes(generation.records.values())
        by_status = {
            status: sorted(n for n, r in generation.records.items() if r.status is status)
            for status in (RecordStatus.ACTIVE, RecordStatus.UNCHECKED)
        }
        return {
            "timestamp": time.time(),
            "generation": generation.number,
            "stats": self.planner_stats(),
            "active": by_status[RecordStatus.ACTIVE],
            "unchecked": by_status[RecordStatus.UNCHECKED],
            "records": {
                name: record.describe() for name, record in sorted(generation.records.items())
            },
            "discovery": {
                "fingerprint": discovery.fingerprint if discovery else None,
                "from_cache": discovery.from_cache if discovery else None,
                "duration_ms": discovery.duration_ms if discovery else None,
                "problems": [
                    {"source": p.source, "origin": p.origin, "target": p.target, "reason": p.reason}
                    for p in (discovery.problems if discovery else ())
                ],
                "context_kinds": {k: self.contexts.target(k) for k in self.contexts.names()},
                "context_kind_problems": list(self.contexts.problems()),
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
            },
            "quarantined": self.list_quarantined(),
            "health": self.health_check(),
            "selection_profiles": self.selection_profiles(_DIAGNOSTIC_PROFILES),
            "instantiation_profiles": self.instantiation_profiles(_DIAGNOSTIC_PROFILES),
            "plan_profiles": self.plan_profiles(_DIAGNOSTIC_PROFILES),
            "boosts": {
                "deep_index_cap_boost": self.settings.deep_index_cap_boost,
                "hotspot_cap_boost": self.settings.hotspot_cap_boost,
                "hotspot_threshold": self.settings.hotspot_threshold,
                "objective_weight": self.settings.objective_weight,
            },
            "settings": {
                "min_reliability": self.settings.min_reliability,
                "default_reliability": self.settings.default_reliability,
                "allowed_planners": list(self.settings.allowed_planners),
                "exclude_planners": list(self.settings.exclude_planners),
                "plugin_dirs": [str(p) for p in self.settings.plugin_dirs],
                "sandbox": self.settings.sandbox,
                "sandbox_timeout_s": self.settings.sandbox_timeout_s,
                "cache_dir": str(self.cache_dir),
                "state_dir": str(self.state_dir),
            },
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

    # ------------------------------------------------------------------ async

    async def adiscover(self, *, force: bool = False) -> list[PlannerSpec]:
        return await asyncio.to_thread(self.discover, force=force)

    async def aget_planner(self, name: str) -> Planner:
        instance = self._instances.get(name)
        if instance is not None:
            return instance
        return await asyncio.to_thread(self.get_planner, name)

    async def aselect_best_planner_name(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        self_heal_on_empty: bool | None = None,
        deep_context: Mapping[str, Any] | None = None,
        *,
        context_kind: str | None = None,
    ) -> str:
        return await asyncio.to_thread(
            self.select_best_planner_name,
            objective,
            required_capabilities,
            prefer_production,
            self_heal_on_empty,
            deep_context,
            context_kind=context_kind,
        )

    async def aexplain_selection(
        self,
        objective: str,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        *,
        context_kind: str | None = None,
    ) -> Selection:
        return await asyncio.to_thread(
            self.explain_selection,
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            context_kind=context_kind,
        )

    async def arun_plan(
        self,
        objective: str,
        context: Mapping[str, Any] | None = None,
        *,
        planner: str | None = None,
        required_capabilities: Sequence[str] | None = None,
        context_kind: str | None = None,
    ) -> Plan:
        return await asyncio.to_thread(
            self.run_plan,
            objective,
            context,
            planner=planner,
            required_capabilities=required_capabilities,
            context_kind=context_kind,
        )

    async def aself_heal(self, max_attempts: int = 3) -> dict[str, Any]:
        return await asyncio.to_thread(self.self_heal, max_attempts, True)

    async def ahealth_check(self, min_required: int = 1) -> dict[str, Any]:
        return await asyncio.to_thread(self.health_check, min_required)
