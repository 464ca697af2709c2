"""The holistic pipeline: opportunities -> patterns -> sequences -> filters -> feasibility ->
vectorised evaluation -> best sequence -> plan.

Every stage has an explicit bound on its output (`EngineSettings`), every module call goes
through the guard (timeout, circuit breaker, timing, events), and a module that fails
contributes nothing while its warning travels into the plan.

Given a `Run` (the run protocol of `planforge.contract`), the engine checks its deadline
before every module call and every evaluation batch, so a run that timed out stops working
within one module call or one batch instead of finishing unseen; its module and progress
events are passed on to the run.

Asked to explain (`explain=True`, or the run's `explain`), the engine also records what every
stage proposed, kept and dropped (`planforge.holistic._explain`) and attaches it to the
result and the plan; otherwise it records nothing beyond its usual counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planforge.contract import Plan, Run
from planforge.holistic._cache import CalculationCache
from planforge.holistic._config import HolisticConfig, estimate_sequences
from planforge.holistic._domain import Domain, Simulation
from planforge.holistic._events import EventHub, to_run
from planforge.holistic._explain import (
    CalculatorReport,
    EvaluationReport,
    Explanation,
    FeasibilityReport,
    FilterReport,
    Trace,
    closest_blocked,
)
from planforge.holistic._perf import PerformanceTracker
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic._resilience import ModuleCall, ModuleGuard
from planforge.holistic._sequences import Sequences, only_dropped, take
from planforge.holistic.modules import (
    KINDS,
    Action,
    ActionSequence,
    Filter,
    HolisticModule,
    OpportunityCalculator,
    PatternGenerator,
    SequenceGenerator,
)
from planforge.logs import get_logger

__all__ = ["DryRunReport", "EngineResult", "HolisticEngine"]


_log = get_logger("holistic.engine")
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EngineResult:
    plan: Plan
    simulation: Simulation
    sequences_generated: int
    sequences_evaluated: int
    feasible_sequences: int
    warnings: tuple[str, ...]
    duration_ms: float
    #: Why this plan, when the run asked (`explain=True`); also in `plan.explanation`.
    explanation: Explanation | None = None


@dataclass(frozen=True, slots=True)
class DryRunReport:
    valid: bool
    modules_loaded: tuple[str, ...]
    estimated_sequences: int
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "modules_loaded": list(self.modules_loaded),
            "estimated_sequences": self.estimated_sequences,
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


@dataclass(slots=True)
class _Stage:
    """What one run accumulates; warnings keep their order and never repeat."""

    run_id: str
    run: Run | None = None
    warnings: list[str] = field(default_factory=list)
    #: What each stage did, collected only when the run asked for an explanation.
    trace: Trace | None = None
    #: Per filter, the sequences it removed (at most `_DROPS_CHECKED`), checked once the
    #: plan is chosen: a filter never removes a better plan silently.
    dropped: dict[str, Sequences] = field(default_factory=dict)

    def check(self) -> None:
        """Stop here (`RunStopped`) when the run's deadline passed or it was cancelled."""
        if self.run is not None:
            self.run.check()

    def warn(self, text: str | None) -> None:
        if text and text not in self.warnings:
            self.warnings.append(text)


def _action_order(action: Action) -> tuple[float, str, str]:
    return (-action.priority, action.side, action.key)


#: Sequences each filter's removals are checked against the chosen plan, at most.
_DROPS_CHECKED = 5_000
#: A removed plan must beat the chosen one by more than this to be reported.
_BETTER_BY = 1e-9


class HolisticEngine:
    """Runs one configuration against contexts of one domain."""

    def __init__(
        self,
        config: HolisticConfig,
        domain: Domain,
        *,
        registry: ModuleRegistry,
        events: EventHub | None = None,
        perf: PerformanceTracker | None = None,
        cache: CalculationCache | None = None,
        guard: ModuleGuard | None = None,
    ) -> None:
        self.config = config
        self.domain = domain
        self.registry = registry
        self.events = events if events is not None else EventHub()
        self.perf = perf if perf is not None else PerformanceTracker()
        settings = config.planner
        self.cache = (
            cache
            if cache is not None
            else CalculationCache(
                max_entries=settings.cache_max_entries, ttl_s=settings.cache_ttl_s
            )
        )
        self.guard = (
            guard
            if guard is not None
            else ModuleGuard.from_settings(settings, events=self.events, perf=self.perf)
        )
        self._modules: dict[str, list[tuple[str, HolisticModule, Any]]] = {}
        for kind in KINDS:
            loaded: list[tuple[str, HolisticModule, Any]] = []
            for name, params in config.enabled(kind):
                cls = registry.load(kind, name)
                loaded.append((f"{kind}.{name}", cls(), params))
            self._modules[kind] = loaded

    # ------------------------------------------------------------------ stages

    def _opportunities(self, context: Any, digest: str, stage: _Stage) -> dict[str, list[Action]]:
        bound = self.config.planner.max_opportunities_per_category
        by_category: dict[str, list[Action]] = {}
        for key, module, params in self._modules["opportunity_calculators"]:
            assert isinstance(module, OpportunityCalculator)
            stage.check()
            cached = self.cache.get(key, digest, params)
            returned: int | None = None  # how many it returned (unknown from the cache)
            warning: str | None = None
            if cached is None:
                found, warning = self.guard.call(
                    key,
                    module.calculate,
                    context,
                    params,
                    default=[],
                    operation="calculate",
                    run_id=stage.run_id,
                )
                stage.warn(warning)
                returned = len(found)
                actions = tuple(sorted(found, key=_action_order)[:bound])
                if warning is None:
                    self.cache.put(key, digest, params, actions)
            else:
                actions = cached
            if stage.trace is not None:
                report = CalculatorReport(key, actions, returned, cached is not None, bool(warning))
                stage.trace.calculators.append(report)
            for action in actions:
                by_category.setdefault(action.category, []).append(action)
        return {category: by_category[category] for category in sorted(by_category)}

    def _candidates(self, by_category: Mapping[str, list[Action]], stage: _Stage) -> list[Action]:
        """The candidates for sequence generators, at most `max_candidates`.

        With `candidate_variants = "all"` every distinct size of a trade is kept (a buy the
        cash cannot pay for beside a smaller one it can): the best size of each side and
        symbol first, then the second sizes, and so on, so a cut keeps symbols before sizes.
        """
        variants: dict[tuple[str, str], dict[float, Action]] = {}
        for actions in by_category.values():
            for action in actions:
                sizes = variants.setdefault(action.identity(), {})
                known = sizes.get(action.quantity)
                if known is None or _action_order(action) < _action_order(known):
                    sizes[action.quantity] = action
        keep_all = self.config.planner.candidate_variants == "all"
        ranked: list[tuple[int, tuple[float, str, str], float, Action]] = []
        for sizes in variants.values():
            ordered = sorted(sizes.values(), key=lambda a: (_action_order(a), a.quantity))
            for rank, action in enumerate(ordered if keep_all else ordered[:1]):
                ranked.append((rank, _action_order(action), action.quantity, action))
        ranked.sort(key=lambda entry: entry[:3])
        kept = [entry[3] for entry in ranked[: self.config.planner.max_candidates]]
        if stage.trace is not None:
            stage.trace.candidates_offered, stage.trace.candidates_kept = len(ranked), len(kept)
        return kept

    def _sequences(
        self,
        context: Any,
        by_category: Mapping[str, list[Action]],
        candidates: list[Action],
        stage: _Stage,
    ) -> Sequences:
        settings = self.config.planner
        seen: set[tuple[tuple[str, str, float], ...]] = set()
        sequences: Sequences = []
        run_id = stage.run_id
        self.events.emit(
            "sequence_generation_started", {"candidates": len(candidates)}, run_id=run_id
        )
        sources: tuple[tuple[str, object, int], ...] = (
            ("pattern_generators", by_category, settings.max_patterns_per_generator),
            ("sequence_generators", candidates, settings.max_sequences),
        )
        for kind, source, cap in sources:
            for key, produced in self._generated(kind, context, source, stage):
                report = take(produced, cap, settings.max_sequences, seen, sequences, key)
                if stage.trace is not None:
                    stage.trace.generators.append(report)
        self.events.emit(
            "sequence_generation_completed", {"sequences": len(sequences)}, run_id=run_id
        )
        return sequences

    def _generated(
        self, kind: str, context: Any, source: object, stage: _Stage
    ) -> Iterator[tuple[str, Sequence[ActionSequence]]]:
        """What each generator of `kind` produced from `source` (nothing when it failed).
        The generators of a kind read the same input, so they run as one batch (one thread
        hop for all of them, each with its own timeout and breaker)."""
        calls: list[ModuleCall] = []
        for key, module, params in self._modules[kind]:
            assert isinstance(module, PatternGenerator | SequenceGenerator)
            args = (context, source, params)
            calls.append(ModuleCall(key, module.generate, args, [], "generate", stage.run_id))
        stage.check()
        outcomes = self.guard.call_each(calls, check=stage.check)
        for call, (produced, warning) in zip(calls, outcomes, strict=True):
            stage.warn(warning)
            yield call.module_key, produced

    def _filter(
        self, context: Any, sequences: list[ActionSequence], stage: _Stage
    ) -> list[ActionSequence]:
        for key, module, params in self._modules["filters"]:
            assert isinstance(module, Filter)
            stage.check()
            kept, warning = self.guard.call(
                key,
                module.apply,
                context,
                sequences,
                params,
                default=sequences,
                operation="apply",
                run_id=stage.run_id,
            )
            stage.warn(warning)
            received, given = len(sequences), sequences
            sequences = only_dropped(sequences, kept)
            if len(sequences) < received:
                left = {id(sequence) for sequence in sequences}
                removed = [s for s in given if id(s) not in left]
                stage.dropped[key] = removed[:_DROPS_CHECKED]
            if stage.trace is not None:
                stage.trace.filters.append(FilterReport(key, received, len(sequences)))
        return sequences

    def _feasible(self, sequences: Sequences, stage: _Stage) -> Sequences:
        """The sequences of an executable shape: 1 to `max_depth` steps, no symbol twice, a
        mean priority of at least `priority_threshold`."""
        settings = self.config.planner
        kept: Sequences = []
        dropped = {"deep": 0, "repeated": 0, "low": 0}
        for sequence in sequences:
            problem = self._shape_problem(sequence)
            if problem is None:
                kept.append(sequence)
            else:
                dropped[problem] += 1
        if stage.trace is not None:
            stage.trace.feasibility = FeasibilityReport(
                len(sequences),
                len(kept),
                dropped["deep"],
                dropped["repeated"],
                dropped["low"],
                settings.max_depth,
                settings.priority_threshold,
            )
        return kept

    def _shape_problem(self, sequence: ActionSequence) -> str | None:
        """Why `sequence` cannot be a plan whatever it scores (`deep`: empty or past
        `max_depth`; `repeated`: a symbol twice; `low`: mean priority under the threshold)."""
        settings = self.config.planner
        if not sequence or len(sequence) > settings.max_depth:
            return "deep"
        if len({action.key for action in sequence}) != len(sequence):
            return "repeated"
        if sum(a.priority for a in sequence) / len(sequence) < settings.priority_threshold:
            return "low"
        return None

    def _check_drops(self, context: Any, chosen: float, stage: _Stage) -> None:
        """Warn for each filter that removed a plan scoring above the one chosen, with both
        scores: a soft preference may cost the portfolio, and the owner should know how much.
        Removed sequences that break a trading rule score nothing and say nothing."""
        for key, removed in stage.dropped.items():
            shaped = [sequence for sequence in removed if self._shape_problem(sequence) is None]
            if not shaped:
                continue
            result = self.domain.evaluate(context, shaped, self.config.domain)
            scores = np.where(result.feasible, result.scores, -np.inf)
            best = float(scores.max())
            if best > chosen + _BETTER_BY:
                stage.warn(
                    f"{key} removed a plan scoring {best:.6f}, above the plan chosen "
                    f"({chosen:.6f}); disable it or loosen its params to plan it"
                )

    def _evaluate(
        self,
        context: Any,
        sequences: list[ActionSequence],
        stage: _Stage,
        progress: Progress | None,
    ) -> tuple[int, float, int]:
        """Index and score of the best feasible sequence (-1 when none), and how many were."""
        run_id = stage.run_id
        batch = self.config.planner.evaluation_batch_size
        total = len(sequences)
        self.events.emit("evaluation_started", {"sequences": total}, run_id=run_id)
        best_index, best_score, feasible = -1, -np.inf, 0
        done = 0
        for start in range(0, total, batch):
            stage.check()
            chunk = sequences[start : start + batch]
            with self.perf.measure("evaluation", "evaluate"):
                result = self.domain.evaluate(context, chunk, self.config.domain)
            feasible += int(np.count_nonzero(result.feasible))
            if stage.trace is not None:
                stage.trace.infeasible.append(start + np.flatnonzero(~result.feasible))
            if len(chunk):
                local = int(np.argmax(result.scores))  # first of equal maxima: deterministic
                score = float(result.scores[local])
                if result.feasible[local] and score > best_score:
                    best_index, best_score = start + local, score
                    self.events.emit(
                        "best_sequence_updated",
                        {"score": score, "steps": len(chunk[local]), "index": best_index},
                        run_id=stage.run_id,
                    )
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            self.events.emit("evaluation_progress", {"done": done, "total": total}, run_id=run_id)
        self.events.emit(
            "evaluation_completed",
            {"sequences": total, "feasible": feasible, "best_score": best_score},
            run_id=run_id,
        )
        if stage.trace is not None:
            stage.trace.evaluation = EvaluationReport(total, feasible, float(best_score))
        return best_index, float(best_score), feasible

    # ------------------------------------------------------------------ public

    def run(
        self,
        objective: str,
        raw_context: Any,
        *,
        planner_name: str = "holistic",
        planner_version: str = "1.0.0",
        run_id: str | None = None,
        progress: Progress | None = None,
        run: Run | None = None,
        explain: bool = False,
    ) -> EngineResult:
        """Plan once; module failures become warnings, never a missing plan.

        With `run`, its id names the run's events, which are also passed on to it, and its
        deadline is checked between module calls and evaluation batches (`RunStopped`).
        With `explain` (or `run.explain`), the result and the plan carry an `Explanation`.
        """
        started = time.perf_counter()
        stage = _Stage(run.run_id if run is not None and run.run_id else run_id or uuid.uuid4().hex)
        if explain or (run is not None and run.explain):
            stage.trace = Trace()
        if run is None:
            return self._run(
                objective, raw_context, stage, started, progress, planner_name, planner_version
            )
        stage.run = run
        stage.check()
        unroute = self.events.route(stage.run_id, to_run(run))
        try:
            return self._run(
                objective, raw_context, stage, started, progress, planner_name, planner_version
            )
        finally:
            unroute()

    def _run(
        self,
        objective: str,
        raw_context: Any,
        stage: _Stage,
        started: float,
        progress: Progress | None,
        planner_name: str,
        planner_version: str,
    ) -> EngineResult:
        context = self.domain.parse_context(raw_context)
        digest = self.domain.context_digest(context)
        by_category = self._opportunities(context, digest, stage)
        candidates = self._candidates(by_category, stage)
        generated = self._sequences(context, by_category, candidates, stage)
        filtered = self._filter(context, generated, stage)
        feasible_shape = self._feasible(filtered, stage)
        best_index, best_score, feasible = self._evaluate(context, feasible_shape, stage, progress)
        stage.check()
        simulation = self._best_simulation(context, feasible_shape, best_index, best_score, stage)
        self._check_drops(context, simulation.end_state_score, stage)
        plan = self.domain.build_plan(
            objective,
            simulation,
            planner_name=planner_name,
            planner_version=planner_version,
            warnings=stage.warnings,
        )
        plan, explanation = self._explained(context, feasible_shape, simulation, plan, stage)
        elapsed = (time.perf_counter() - started) * 1000.0
        self.events.emit(
            "planning_completed",
            {
                "steps": len(plan.steps),
                "score": plan.score,
                "sequences": len(feasible_shape),
                "duration_ms": round(elapsed, 3),
                "warnings": list(stage.warnings),
            },
            run_id=stage.run_id,
        )
        _log.info(
            "planned",
            run_id=stage.run_id,
            steps=len(plan.steps),
            generated=len(generated),
            evaluated=len(feasible_shape),
            warnings=len(stage.warnings),
            duration_ms=round(elapsed, 3),
        )
        return EngineResult(
            plan=plan,
            simulation=simulation,
            sequences_generated=len(generated),
            sequences_evaluated=len(feasible_shape),
            feasible_sequences=feasible,
            warnings=tuple(stage.warnings),
            duration_ms=elapsed,
            explanation=explanation,
        )

    def _explained(
        self,
        context: Any,
        evaluated: Sequences,
        simulation: Simulation,
        plan: Plan,
        stage: _Stage,
    ) -> tuple[Plan, Explanation | None]:
        """The plan with its explanation, when the run asked for one."""
        if stage.trace is None:
            return plan, None
        explanation = self._explanation(context, evaluated, simulation, plan, stage.trace, stage)
        return plan.model_copy(update={"explanation": explanation.to_dict()}), explanation

    def _explanation(
        self,
        context: Any,
        evaluated: Sequences,
        simulation: Simulation,
        plan: Plan,
        trace: Trace,
        stage: _Stage,
    ) -> Explanation:
        """The trace, frozen; for an empty plan, with the closest plans a rule stopped."""
        if plan.steps:
            return trace.freeze(simulation.current_score, len(plan.steps))
        refused = [evaluated[i] for i in trace.infeasible_indices()]
        blocked, scored = closest_blocked(
            self.domain,
            context,
            self.config.domain,
            refused,
            batch=self.config.planner.evaluation_batch_size,
            check=stage.check,
        )
        return trace.freeze(simulation.current_score, 0, blocked, scored)

    def _best_simulation(
        self,
        context: Any,
        feasible_shape: list[ActionSequence],
        best_index: int,
        best_score: float,
        stage: _Stage,
    ) -> Simulation:
        """The best sequence's simulation, or the current state's with a warning saying why."""
        baseline = self.domain.simulate(context, (), self.config.domain)
        if best_index >= 0 and best_score > baseline.end_state_score:
            return self.domain.simulate(context, feasible_shape[best_index], self.config.domain)
        if not feasible_shape:
            stage.warn("no candidate sequence survived generation, filters and feasibility")
        elif best_index < 0:
            stage.warn("no candidate sequence is feasible (cash, holdings or repeats)")
        else:
            stage.warn(
                f"no sequence improves the portfolio: the best scored {best_score:.6f}, "
                f"the current state scores {baseline.end_state_score:.6f}"
            )
        return baseline

    def dry_run(self) -> DryRunReport:
        """Everything the configuration enables is loaded and valid; nothing is planned."""
        loaded = tuple(key for modules in self._modules.values() for key, _, _ in modules)
        warnings: list[str] = []
        if not self._modules["opportunity_calculators"]:
            warnings.append("no opportunity calculator is enabled: every plan will be empty")
        if not (self._modules["pattern_generators"] or self._modules["sequence_generators"]):
            warnings.append("no pattern or sequence generator is enabled: nothing to evaluate")
        return DryRunReport(
            valid=True,
            modules_loaded=loaded,
            estimated_sequences=estimate_sequences(
                self.config, self.config.planner.max_opportunities_per_category
            ),
            warnings=tuple(warnings),
        )
