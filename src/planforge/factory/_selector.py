"""Selection and its consequences: ranking a request, admission through the breaker, recording
outcomes into reliability, and self-heal when nothing is selectable.

Every method takes a `SelectionRequest`; `selection_request` is the one place that builds one
from the keyword arguments of the public calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from planforge.contract import Plan, Planner, Run, plan_with
from planforge.errors import (
    CircuitOpenError,
    InvalidContext,
    NoActivePlannersError,
    PlanExecutionError,
    PlannerSelectionError,
    RunStopped,
)
from planforge.factory._contexts import admit_context
from planforge.factory._generations import Generations
from planforge.factory._ranking import Selection, SelectionRequest
from planforge.factory._registry import Generation, PlannerRecord
from planforge.factory._telemetry import ProfileRing
from planforge.logs import get_logger

__all__ = ["Selector", "selection_request"]

_log = get_logger("factory")
_RELIABILITY_REFRESH_S = 1.0


def selection_request(
    objective: str | SelectionRequest,
    required_capabilities: Sequence[str] | None = None,
    prefer_production: bool = True,
    deep_context: Mapping[str, Any] | None = None,
    *,
    strict: bool = False,
    context_kind: str | None = None,
) -> SelectionRequest:
    """The request the public calls describe with keyword arguments, or the one they were given."""
    if isinstance(objective, SelectionRequest):
        given = (required_capabilities, prefer_production, deep_context, strict, context_kind)
        if given != (None, True, None, False, None):
            raise PlannerSelectionError(
                "pass either a SelectionRequest or the request's keyword arguments, not both.",
                where="selection",
            )
        return objective
    return SelectionRequest(
        objective=objective,
        required_capabilities=tuple(required_capabilities or ()),
        prefer_production=prefer_production,
        deep_context=deep_context,
        strict=strict,
        context_kind=context_kind,
    )


class Selector:
    """Ranks the current generation for a request and keeps the ranking in step with what
    planners do (reliability, breakers)."""

    def __init__(
        self,
        generations: Generations,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], object],
    ) -> None:
        self._generations = generations
        self._settings = generations.settings
        self._clock = clock
        self._sleep = sleep
        self._observed: set[str] = set()
        self.last_reliability_refresh = 0.0
        self.selection_profiles = ProfileRing(self._settings.max_profiles)
        self.plan_profiles = ProfileRing(self._settings.max_profiles)
        self._heal_lock = threading.Lock()
        self._last_heal: float | None = None
        self.heal_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ ranking

    def _synced(self) -> Generation:
        """The current generation, its index told of decayed reliabilities and elapsed
        breaker waits.

        Costs nothing while no planner has run; the sets are read under the state lock
        because outcomes are recorded from other threads.
        """
        generations = self._generations
        generation = generations.current()
        index = generation.index
        if generations.breaker_blocked:
            with generations.state_lock:
                for name in sorted(generations.breaker_blocked):
                    record = generation.records.get(name)
                    if record is None or generations.vitals.breaker_exclusion(name) is None:
                        generations.breaker_blocked.discard(name)
                        if record is not None and record.status.selectable:
                            index.set_excluded(name, None)
        if self._observed and (
            self._clock() - self.last_reliability_refresh >= _RELIABILITY_REFRESH_S
        ):
            with generations.state_lock:
                self.last_reliability_refresh = self._clock()
                for name in sorted(self._observed):
                    record = generation.records.get(name)
                    if record is not None:
                        index.set_reliability(name, record.reliability.value())
        return generation

    def select_name(self, request: SelectionRequest, self_heal_on_empty: bool | None) -> str:
        """The best planner's name; raises `NoActivePlannersError` (after a self-heal when
        `self_heal_on_empty`, or the settings, ask for one)."""
        started = time.perf_counter_ns()
        generation = self._synced()
        best = generation.index.best(request)
        if best is None:
            heal = (
                self._settings.self_heal_on_empty
                if self_heal_on_empty is None
                else self_heal_on_empty
            )
            blocking = self._settings.self_heal_blocking  # non-blocking: heal for the next call
            if heal and self.self_heal(blocking=blocking)["after_active"] > 0:
                generation = self._generations.current()
                best = generation.index.best(request)
            if best is None:
                selection = generation.index.explain(request)
                reasons = {item.name: item.reason for item in selection.exclusions}
                raise NoActivePlannersError(request.objective, reasons)
        name, score = best
        if self._settings.profile_selection:
            deep_context = request.deep_context
            self.selection_profiles.append(
                {
                    "objective_length": len(request.objective),
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

    def top(self, request: SelectionRequest, n: int) -> list[str]:
        """The names of the `n` best planners, best first."""
        if n < 1:
            raise ValueError("n must be at least 1")
        return [name for name, _ in self._synced().index.top(request, n)]

    def explain(self, request: SelectionRequest) -> Selection:
        return self._synced().index.explain(request)

    def admit_context(
        self,
        request: SelectionRequest,
        context: Mapping[str, Any],
        planner: str | None,
    ) -> str | None:
        generation = self._synced()
        return admit_context(
            generation, self._generations.contexts, request, context, planner=planner
        )

    # ------------------------------------------------------------------ admission and outcomes

    def admit(self, name: str) -> PlannerRecord:
        """Ask the planner's circuit breaker for one call; raises `CircuitOpenError`."""
        record = self._generations.lookup(name)
        if not record.breaker.allow():
            raise CircuitOpenError(name, record.breaker.retry_after_s(), record.breaker.state)
        return record

    def release_admission(self, name: str, input_error: InvalidContext | None) -> None:
        self._generations.lookup(name).breaker.release_permission()
        if input_error is not None:
            _log.info("planner rejected its context", planner=name, field=input_error.field)

    def record_outcome(
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
        generations = self._generations
        generation = generations.latest
        with generations.state_lock:
            self._observed.add(name)
            current = generation is not None and generation.records.get(name) is record
            index = generation.built_index if generation is not None else None
            if current and index is not None:
                index.set_reliability(name, record.reliability.value())
                reason = generations.vitals.breaker_exclusion(name)
                if reason is not None:
                    generations.breaker_blocked.add(name)
                    index.set_excluded(name, reason)
        self.plan_profiles.append(
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

    def run_plan(
        self,
        request: SelectionRequest,
        context: Mapping[str, Any] | None,
        planner: str | None,
        get_planner: Callable[[str], Planner],
        run: Run | None = None,
    ) -> Plan:
        """Admit the context, select (or take `planner`), plan, and record the outcome.

        `run` reaches a planner that declared the run protocol; a planner that did not is
        called without it. A run stopped by its deadline counts as the planner's failure (it
        took too long) and is raised as itself, so the caller sees the deadline.
        """
        data = dict(context or {})
        kind = self.admit_context(request, data, planner)
        name = planner or self.select_name(replace(request, context_kind=kind), None)
        record = self.admit(name)
        try:
            instance = get_planner(name)
        except BaseException:
            record.breaker.release_permission()
            raise
        record.last_access = time.time()
        objective = request.objective
        started = time.perf_counter()
        try:
            plan = plan_with(instance, objective, data, run)
            if not isinstance(plan, Plan):
                raise TypeError(f"plan() returned {type(plan).__name__}, not a Plan")
        except InvalidContext as exc:
            record.breaker.release_permission()  # the caller's input: no outcome to record
            _log.info("planner rejected its context", planner=name, field=exc.field)
            raise
        except Exception as exc:
            elapsed = time.perf_counter() - started
            cause = f"{type(exc).__name__}: {exc}"
            self.record_outcome(record, elapsed, ok=False, error=cause, objective=objective)
            if isinstance(exc, RunStopped):
                raise
            raise PlanExecutionError(name, cause) from exc
        elapsed = time.perf_counter() - started
        self.record_outcome(record, elapsed, ok=True, error=None, objective=objective)
        return plan

    # ------------------------------------------------------------------ self-heal

    def self_heal(self, max_attempts: int = 3, blocking: bool = True) -> dict[str, Any]:
        """Rediscover with backoff when no planner is active; a cooldown between heals.

        Sleeps `min(0.2 * 2**attempt, 2.0)` between attempts, never after the last. The
        non-blocking form returns at once and heals on a background thread.
        """
        before = len(self._generations.current().selectable_names())
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
            last = self._last_heal
            if last is not None and now - last < self._settings.self_heal_cooldown_s:
                report["cooldown_skip"] = True
                return report
            self._last_heal = now
            if not blocking:
                if self.heal_thread is None or not self.heal_thread.is_alive():
                    self.heal_thread = threading.Thread(
                        target=self._heal_attempts,
                        args=(max_attempts,),
                        name="planforge-self-heal",
                        daemon=True,
                    )
                    self.heal_thread.start()
                report["background"] = True
                return report
        report["attempts"], report["after_active"] = self._heal_attempts(max_attempts)
        return report

    def _heal_attempts(self, max_attempts: int) -> tuple[int, int]:
        active = 0
        attempts = 0
        for attempt in range(max_attempts):
            attempts += 1
            generation = self._generations.refresh(force=True, new_generation=True)
            active = len(generation.selectable_names())
            _log.info("self-heal attempt", attempt=attempts, active=active)
            if active > 0:
                break
            if attempt < max_attempts - 1:
                self._sleep(min(0.2 * 2**attempt, 2.0))
        return attempts, active
