"""`PlannerFactory`: the one face over discovery, loading, selection and health.

The work is done by parts that stand alone: `Generations` (records from discovery),
`Loader` (sandbox, quarantine, instantiation), `Selector` (ranking, admission, outcomes,
self-heal) and `Health` (stats, health, diagnostics). Two factories share nothing. Lock order
is the state lock, then a planner's lock, never the reverse; reads take the current generation
without locking.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from planforge.contract import Plan, Planner, PlannerSpec, Run
from planforge.errors import InvalidContext
from planforge.factory._contexts import ContextKinds, ContextValidator
from planforge.factory._generations import Generations
from planforge.factory._health import Health
from planforge.factory._loader import Loader, SandboxSession
from planforge.factory._ranking import Selection, SelectionRequest
from planforge.factory._registry import Generation, PlannerRecord
from planforge.factory._selector import Selector, selection_request
from planforge.settings import FactorySettings, load_settings

__all__ = ["PlannerFactory"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _default_dir(kind: str) -> Path:
    import platformdirs

    if kind == "cache":
        return Path(platformdirs.user_cache_dir("planforge"))
    return Path(platformdirs.user_state_dir("planforge"))


def _in_thread(
    method: Callable[Concatenate[PlannerFactory, _P], _R],
) -> Callable[Concatenate[PlannerFactory, _P], Coroutine[Any, Any, _R]]:
    """The async mirror of a blocking method: the same parameters, run in a worker thread."""

    async def mirror(self: PlannerFactory, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await asyncio.to_thread(method, self, *args, **kwargs)

    mirror.__name__ = f"a{method.__name__}"
    mirror.__qualname__ = f"PlannerFactory.{mirror.__name__}"
    mirror.__doc__ = f"`{method.__name__}` in a worker thread.\n\n{method.__doc__ or ''}".strip()
    mirror.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return mirror


class PlannerFactory:
    """Finds planners, picks the best one for a request and explains why, loads it safely."""

    def __init__(
        self,
        settings: FactorySettings | None = None,
        *,
        search_path: Sequence[str] | None = None,
        cache_dir: Path | None = None,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._search_path = None if search_path is None else list(search_path)
        self.cache_dir = cache_dir or self.settings.cache_dir or _default_dir("cache")
        self.state_dir = state_dir or self.settings.state_dir or _default_dir("state")
        self.contexts = ContextKinds(search_path)
        self._sandbox = SandboxSession(self.settings, search_path)
        self._generations = Generations(
            self.settings,
            search_path=search_path,
            cache_dir=self.cache_dir,
            state_dir=self.state_dir,
            clock=clock,
            contexts=self.contexts,
            introspect=self._sandbox.introspect,
        )
        self._loader = Loader(self._generations, self._sandbox, search_path)
        self._selector = Selector(self._generations, clock=clock, sleep=sleep)
        self._health = Health(
            self._generations,
            self._loader,
            self._selector,
            cache_dir=self.cache_dir,
            state_dir=self.state_dir,
        )

    def recipe(self) -> dict[str, Any]:
        """Keyword arguments that build an equivalent factory in another process (a worker):
        the same settings, search path, cache and state. Planners registered in code are not
        part of it: they plan only where they were registered."""
        return {
            "settings": self.settings,
            "search_path": self._search_path,
            "cache_dir": self.cache_dir,
            "state_dir": self.state_dir,
        }

    def _current(self) -> Generation:
        return self._generations.current()

    # ------------------------------------------------------------------ discovery

    def discover(self, *, force: bool = False) -> list[PlannerSpec]:
        """Find every planner (cached on disk by fingerprint) and return their specs by name."""
        generation = self._generations.refresh(force=force)
        return [record.spec for _, record in sorted(generation.records.items())]

    def refresh_metadata(self) -> list[PlannerSpec]:
        """Discover again, ignoring the disk cache."""
        return self.discover(force=True)

    def reload_planners(self) -> list[str]:
        """Rediscover and start a new generation: every planner is built again on next use."""
        return self._generations.refresh(force=True, new_generation=True).selectable_names()

    def register(self, cls: type[Planner]) -> PlannerSpec:
        """Register a class from code; it wins over a plugin of the same name."""
        return self._generations.register(cls)

    def register_context_kind(self, kind: str, validator: ContextValidator) -> None:
        """Register a context kind's validator from code (it beats an entry point)."""
        self.contexts.register(kind, validator)

    def list_planners(self, *, include_inactive: bool = False) -> list[str]:
        """The selectable planners' names (every discovered one with `include_inactive`)."""
        generation = self._generations.current()
        return sorted(generation.records) if include_inactive else generation.selectable_names()

    # ------------------------------------------------------------------ loading

    def get_planner(self, name: str) -> Planner:
        """The shared instance of a planner, built once per generation under contention."""
        # The hot path stays here, one dict lookup: every request of the service takes it.
        latest = self._generations.latest
        instance = latest.instances.get(name) if latest is not None else None
        return instance if instance is not None else self._loader.get_planner(name)

    def new_planner(self, name: str) -> Planner:
        """A fresh instance, for stateful planners that must not be shared between users."""
        return self._loader.new_planner(name)

    def get_all_planners(self) -> dict[str, Planner]:
        """Build every active planner; one that fails is quarantined and left out."""
        return self._loader.get_all_planners()

    def check_planners(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Run the sandbox check now for `names` (every discovered planner by default), in that
        order, and return each result: "passed", "quarantined" (with the reason) or "skipped"
        (not allowed, or registered in code). A planner already quarantined is not run again:
        release it first. Raises `PlannerNotFound` before checking anything if a name is
        unknown, and `PlannerError` when the sandbox is off."""
        return self._loader.check_planners(names)

    def list_quarantined(self) -> list[dict[str, Any]]:
        """Every quarantine entry, and whether it still applies (its file is unchanged)."""
        return self._loader.list_quarantined()

    def release_quarantine(self, name: str) -> bool:
        """Lift a quarantine; the planner is checked again in the sandbox on next use."""
        return self._loader.release_quarantine(name)

    def close(self) -> None:
        """Stop the sandbox helper process; the factory still works and restarts it on need."""
        self._sandbox.close()

    def __enter__(self) -> PlannerFactory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ selection

    def select_best_planner_name(
        self,
        objective: str | SelectionRequest,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        self_heal_on_empty: bool | None = None,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> str:
        """The name of the best planner for the request; raises `NoActivePlannersError`.

        Takes a `SelectionRequest`, or its fields as arguments. With `context_kind`, planners
        that read another kind of context are left out.
        """
        request = selection_request(
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            strict=strict,
            context_kind=context_kind,
        )
        return self._selector.select_name(request, self_heal_on_empty)

    def select_best_planner(
        self,
        objective: str | SelectionRequest,
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
        objective: str | SelectionRequest,
        n: int = 3,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> list[str]:
        """The names of the `n` best planners, best first."""
        request = selection_request(
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            strict=strict,
            context_kind=context_kind,
        )
        return self._selector.top(request, n)

    def explain_selection(
        self,
        objective: str | SelectionRequest,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        context_kind: str | None = None,
    ) -> Selection:
        """The winner, every candidate's score breakdown and every exclusion with its reason."""
        request = selection_request(
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            strict=strict,
            context_kind=context_kind,
        )
        return self._selector.explain(request)

    # ------------------------------------------------------------------ running

    def run_plan(
        self,
        objective: str | SelectionRequest,
        context: Mapping[str, Any] | None = None,
        *,
        planner: str | None = None,
        required_capabilities: Sequence[str] | None = None,
        prefer_production: bool = True,
        deep_context: Mapping[str, Any] | None = None,
        context_kind: str | None = None,
        run: Run | None = None,
    ) -> Plan:
        """Admit the context, select (or take `planner`), plan, and record the outcome.

        The context's kind is decided and the context validated first (`admit_context`): a
        bad context raises `InvalidContext` before any planner runs, and selection only
        considers planners that read its kind. An `InvalidContext` raised by the planner
        itself is the caller's error too: it counts neither as a failure nor as a success.
        `run` (the run protocol) reaches the planner only if it declared `accepts_run`.
        """
        request = selection_request(
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            context_kind=context_kind,
        )
        return self._selector.run_plan(request, context, planner, self.get_planner, run)

    def admit_context(
        self,
        objective: str | SelectionRequest,
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
        `planforge.factory._contexts.decide_context_kind`.
        """
        request = selection_request(
            objective,
            required_capabilities,
            prefer_production,
            deep_context,
            context_kind=context_kind,
        )
        return self._selector.admit_context(request, context, planner)

    def admit(self, name: str) -> PlannerRecord:
        """Ask the planner's circuit breaker for one call; raises `CircuitOpenError` when it
        refuses. Callers that plan outside `run_plan` (the runtime) call this first and then
        report the outcome with `record_outcome`, or `release_admission` if they never ran."""
        return self._selector.admit(name)

    def release_admission(self, name: str, *, input_error: InvalidContext | None = None) -> None:
        """Give back a permission taken by `admit` for a call that never happened, or whose
        planner rejected its context (`input_error`): neither counts for or against it."""
        self._selector.release_admission(name, input_error)

    def record_outcome(
        self, name: str, duration_s: float, *, ok: bool, error: str | None = None
    ) -> None:
        """Feed an outcome observed elsewhere (for example a runtime engine) into reliability."""
        record = self._generations.lookup(name)
        self._selector.record_outcome(record, duration_s, ok=ok, error=error, objective=None)

    def self_heal(self, max_attempts: int = 3, blocking: bool = True) -> dict[str, Any]:
        """Rediscover with backoff when no planner is active; 5 s cooldown between heals.

        Sleeps `min(0.2 * 2**attempt, 2.0)` between attempts, never after the last. The
        non-blocking form returns at once and heals on a background thread.
        """
        return self._selector.self_heal(max_attempts, blocking)

    # ------------------------------------------------------------------ telemetry and health

    def selection_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._selector.selection_profiles.snapshot(last)

    def instantiation_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._loader.instantiation_profiles.snapshot(last)

    def plan_profiles(self, last: int | None = None) -> list[dict[str, Any]]:
        return self._selector.plan_profiles.snapshot(last)

    def planner_stats(self, name: str | None = None) -> dict[str, Any]:
        """Invocations, failures, mean/p50/p95 duration and reliability, per planner."""
        return self._health.planner_stats(name)

    def describe_planner(self, name: str) -> dict[str, Any]:
        """One planner's spec, status, reliability, breaker, stats and quarantine."""
        return self._health.describe_planner(name)

    def health_check(self, min_required: int = 1) -> dict[str, Any]:
        """Ready when at least `min_required` planners are selectable; with suggestions."""
        return self._health.health_check(min_required)

    def diagnostics_json(self) -> dict[str, Any]:
        """Everything an operator may need to see, as one JSON-friendly document."""
        return self._health.diagnostics_json()

    def diagnostics_report(self) -> str:
        """The diagnostics as plain text for a person."""
        return self._health.diagnostics_report()

    def export_diagnostics(self, path: str | Path) -> Path:
        """Write the diagnostics JSON atomically and return the path."""
        return self._health.export_diagnostics(path)

    # ------------------------------------------------------------------ async mirrors

    async def aget_planner(self, name: str) -> Planner:
        """`get_planner` without a thread hop when the instance is already built."""
        latest = self._generations.latest
        instance = latest.instances.get(name) if latest is not None else None
        if instance is not None:
            return instance
        return await asyncio.to_thread(self.get_planner, name)

    adiscover = _in_thread(discover)
    aselect_best_planner_name = _in_thread(select_best_planner_name)
    aexplain_selection = _in_thread(explain_selection)
    arun_plan = _in_thread(run_plan)
    aself_heal = _in_thread(self_heal)
    ahealth_check = _in_thread(health_check)
