"""Loading planners: the sandbox check, quarantine, import and instantiation.

Only this module imports plugin code, and only after the sandbox has passed it (when the
sandbox is on). A failure quarantines the planner until its file changes or an operator
releases it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from planforge.contract import Planner, PlannerSpec
from planforge.errors import (
    PlannerError,
    PlannerInstantiationError,
    PlannerNotFound,
    PlannerQuarantined,
    SandboxError,
)
from planforge.factory._discovery import IntrospectionTarget
from planforge.factory._generations import Generations
from planforge.factory._passes import SANDBOX_OFF_CHECK, SandboxPass, check_result
from planforge.factory._quarantine import QuarantineEntry, file_fingerprint
from planforge.factory._registry import PlannerRecord, RecordStatus
from planforge.factory._sandbox import ImportTarget, Sandbox, SandboxReport
from planforge.factory._telemetry import ProfileRing
from planforge.logs import get_logger
from planforge.settings import FactorySettings

__all__ = ["Loader", "SandboxSession"]

_log = get_logger("factory")


class SandboxSession:
    """The factory's sandbox client, started on first need and restarted after `close()`."""

    def __init__(self, settings: FactorySettings, search_path: Sequence[str] | None) -> None:
        self._settings = settings
        self.search_path = tuple(search_path or ())
        self._lock = threading.Lock()
        self._sandbox: Sandbox | None = None

    def client(self) -> Sandbox:
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox(
                    timeout_s=self._settings.sandbox_timeout_s,
                    max_memory_mb=self._settings.sandbox_max_memory_mb,
                    max_output_bytes=self._settings.sandbox_max_output_bytes,
                )
            return self._sandbox

    def close(self) -> None:
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None

    def introspect(self, target: IntrospectionTarget) -> Mapping[str, Any]:
        """Read non-literal metadata by importing the module in the sandbox, never here."""
        report = self.client().check(
            ImportTarget(
                module=target.module,
                qualname=target.qualname,
                path=target.path,
                search_path=self.search_path,
            ),
            self_test=False,
            instantiate=False,
        )
        return report.metadata or {}


class Loader:
    """Builds planner instances: shared ones per generation, fresh ones on request."""

    def __init__(
        self,
        generations: Generations,
        sandbox: SandboxSession,
        search_path: Sequence[str] | None,
    ) -> None:
        self._generations = generations
        self._settings = generations.settings
        self._sandbox = sandbox
        self._search_path = tuple(search_path) if search_path is not None else None
        self.instantiation_profiles = ProfileRing(self._settings.max_profiles)

    # ------------------------------------------------------------------ quarantine

    def list_quarantined(self) -> list[dict[str, Any]]:
        store = self._generations.quarantine
        return [
            {
                "planner_name": entry.planner_name,
                "module": entry.module,
                "reason": entry.reason,
                "error_type": entry.error_type,
                "since": entry.since,
                "path": entry.path,
                "current": store.is_current(entry, file_fingerprint(entry.path)),
            }
            for entry in store.entries()
        ]

    def release_quarantine(self, name: str) -> bool:
        """Lift a quarantine; the planner is checked again in the sandbox on next use."""
        generations = self._generations
        released = generations.quarantine.release(name)
        if released:
            _log.info("quarantine released", planner=name)
            with generations.state_lock:
                latest = generations.latest
                if latest is not None and name in latest.records:
                    generations.refresh(force=False, new_generation=True)
        return released

    def quarantine(self, record: PlannerRecord, error: PlannerError) -> None:
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
        self._generations.quarantine.add(entry)
        with self._generations.status_lock:
            record.status = RecordStatus.QUARANTINED
            record.status_reason = f"quarantined: {entry.reason}"
        latest = self._generations.latest
        if latest is not None and latest.records.get(record.name) is record:
            latest.exclude(record.name, record.status_reason)
        _log.warning(
            "planner quarantined",
            planner=record.name,
            module=record.spec.module,
            reason=entry.reason,
            error_type=entry.error_type,
        )

    # ------------------------------------------------------------------ the sandbox check

    def sandbox_check(self, record: PlannerRecord) -> SandboxReport:
        """Check the planner in the sandbox: a failure quarantines it, a pass is remembered
        (for other processes too) and makes an unchecked planner active."""
        spec = record.spec
        fingerprint = file_fingerprint(spec.path)  # before the check: a later edit is unchecked
        try:
            report = self._sandbox.client().check(
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
            self.quarantine(record, exc)
            raise
        record.sandbox_checked = True
        record.self_test_passed = report.self_test != "failed"
        record.sandbox_passed_at = time.time()
        passed = SandboxPass(
            spec.target, fingerprint, spec.name, record.sandbox_passed_at, report.self_test
        )
        try:
            self._generations.passes.add(passed)
        except OSError as exc:  # only what other processes show depends on it
            _log.warning("could not record a sandbox pass", planner=spec.name, error=str(exc))
        with self._generations.status_lock:
            if record.status is RecordStatus.UNCHECKED:
                record.status, record.status_reason = RecordStatus.ACTIVE, None
        return report

    def check_planners(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The sandbox check, now, of each named planner in order (see the facade's method)."""
        if not self._settings.sandbox:
            raise PlannerError(SANDBOX_OFF_CHECK, where="sandbox")
        generation = self._generations.current()
        wanted = sorted(generation.records) if names is None else list(dict.fromkeys(names))
        for name in wanted:
            if name not in generation.records:
                raise PlannerNotFound(name, tuple(sorted(generation.records)))
        return [self._check_one(generation.records[name]) for name in wanted]

    def _check_one(self, record: PlannerRecord) -> dict[str, Any]:
        result = check_result(record)
        if result["result"] is not None:
            return result
        entry = self._generations.current_quarantine(record.spec)
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
                report = self.sandbox_check(record)
            except SandboxError as exc:
                reason = getattr(exc, "reason", None) or exc.message
                return {**check_result(record), "result": "quarantined", "reason": reason}
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        passed = {"result": "passed", "self_test": report.self_test, "duration_ms": duration_ms}
        return {**check_result(record), **passed}

    # ------------------------------------------------------------------ import and build

    def _load_class(self, record: PlannerRecord) -> type[Planner]:
        spec = record.spec
        if record.cls is not None:
            return record.cls
        if spec.source == "code":
            cls = self._generations.code_classes[spec.name]
            record.cls = cls
            return cls
        entry = self._generations.current_quarantine(spec)
        if entry is not None:
            raise PlannerQuarantined(spec.name, entry.reason, entry.since)
        if self._settings.sandbox and not record.sandbox_checked:
            self.sandbox_check(record)
        try:
            module = self._import_module(spec)
            target: Any = module
            for part in spec.qualname.split("."):
                target = getattr(target, part)
        except Exception as exc:
            error = PlannerInstantiationError(
                spec.name, spec.module, f"import failed: {type(exc).__name__}: {exc}"
            )
            self.quarantine(record, error)
            raise error from exc
        if not isinstance(target, type) or not callable(getattr(target, "plan", None)):
            error = PlannerInstantiationError(
                spec.name, spec.module, f"{spec.qualname} is not a planner class"
            )
            self.quarantine(record, error)
            raise error
        record.cls = target
        return target

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
        if self._settings.profile_instantiation:
            self.instantiation_profiles.append(
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
        latest = self._generations.latest
        instance = latest.instances.get(name) if latest is not None else None
        if instance is not None:
            return instance
        return self._build_shared(name)

    def _build_shared(self, name: str) -> Planner:
        generations = self._generations
        with generations.state_lock:
            generation = generations.current()
            record = generations.lookup(name)
        with record.lock:
            if record.instance is not None:
                generation.instances.setdefault(name, record.instance)
                return record.instance
            if record.status is RecordStatus.QUARANTINED:
                entry = generations.current_quarantine(record.spec)
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
        record = self._generations.lookup(name)
        with record.lock:
            return self._instantiate(record)

    def get_all_planners(self) -> dict[str, Planner]:
        """Build every active planner; one that fails is quarantined and left out."""
        planners: dict[str, Planner] = {}
        for name in self._generations.current().selectable_names():
            try:
                planners[name] = self.get_planner(name)
            except PlannerError as exc:
                _log.warning("planner unavailable", planner=name, error=exc.message)
        return planners
