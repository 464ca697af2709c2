"""`planforge plan` and `planforge abtest`: make a plan, or compare two configurations' plans."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from planforge.cli._apps import app
from planforge.cli._common import (
    JsonOption,
    config_reference,
    emit_json,
    fail,
    guarded,
    number_text,
    open_factory,
    quantity_text,
    read_context,
    rich_console,
)
from planforge.cli._store import open_store

if TYPE_CHECKING:
    from planforge.factory import PlannerFactory

__all__ = ["abtest", "plan"]


class _PlanWatcher:
    """Follows a run's events: a progress bar on a terminal, counts for the summary.

    Events may arrive from a module's worker thread; rich's progress is thread-safe.
    """

    def __init__(self, progress: Any | None) -> None:
        self.progress = progress
        self.task: Any = (
            progress.add_task("generating sequences", total=None) if progress is not None else None
        )
        self.generated: int | None = None
        self.evaluated: int | None = None
        self.feasible: int | None = None

    def __call__(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        payload = getattr(event, "payload", {}) or {}
        if kind == "sequence_generation_completed":
            self.generated = payload.get("sequences")
        elif kind == "evaluation_started":
            self._update(description="evaluating sequences", total=payload.get("sequences"))
        elif kind == "progress":  # the run protocol's progress: the evaluation's batches
            self._update(completed=payload.get("done", 0), total=payload.get("total"))
        elif kind == "evaluation_completed":
            self.evaluated = payload.get("sequences")
            self.feasible = payload.get("feasible")
            self._update(description="building the plan")

    def _update(self, **fields: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, **fields)

    def summary(self) -> str | None:
        if self.evaluated is None:
            return None
        generated = f" of {self.generated:,} generated" if self.generated is not None else ""
        feasible = f" ({self.feasible:,} feasible)" if self.feasible is not None else ""
        return f"evaluated {self.evaluated:,}{generated} sequences{feasible}"


ExplainOption = Annotated[
    bool,
    typer.Option(
        "--explain",
        help="Also show why this plan: each calculator's candidates, what every stage kept "
        "and dropped, and for an empty plan the closest plan a rule stopped (in the JSON as "
        "`explanation`).",
    ),
]


def _print_plan(result: Any, watcher: _PlanWatcher | None, *, explain: bool = False) -> None:
    from rich.table import Table

    console = rich_console()
    table = Table(title=f"Plan {result.plan_id} by {result.planner.name} {result.planner.version}")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    table.add_column("quantity", justify="right", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("narrative")
    for step in result.steps:
        params = step.params if isinstance(step.params, dict) else {}
        table.add_row(
            step.id,
            step.action,
            str(params.get("symbol", "")),
            quantity_text(params.get("quantity")),
            number_text(params.get("value_base", params.get("value"))),
            step.description,
        )
    if result.steps:
        console.print(table)
    else:
        console.print(f"Plan {result.plan_id} by {result.planner.name}: no steps")
    metrics = result.metrics
    if "current_score" in metrics and "end_state_score" in metrics:
        improvement = metrics.get(
            "improvement", metrics["end_state_score"] - metrics["current_score"]
        )
        console.print(
            f"score: {metrics['current_score']:.6f} -> {metrics['end_state_score']:.6f} "
            f"(improvement {improvement:+.6f})",
            highlight=False,
        )
    elif result.score is not None:
        console.print(f"score: {result.score:.4f}")
    if "cash_required" in metrics or "cash_generated" in metrics:
        console.print(
            f"cash: required {number_text(metrics.get('cash_required', 0.0))}, "
            f"generated {number_text(metrics.get('cash_generated', 0.0))}",
            highlight=False,
        )
    summary = watcher.summary() if watcher is not None else None
    if summary:
        console.print(summary, highlight=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    if explain:
        from planforge.cli._explain import print_explanation

        print_explanation(result.explanation, planner=result.planner.name)


@app.command("plan")
@guarded
def plan(
    objective: str,
    planner: Annotated[
        str | None, typer.Option("--planner", help="Use this planner instead of selecting.")
    ] = None,
    context: Annotated[
        Path | None, typer.Option("--context", help="JSON or TOML file with the context.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Holistic planner configuration: a TOML file or a preset "
            "(default, conservative, aggressive). Sent as the run's configuration (the run "
            "protocol), or as the context key planner_config to a planner without it.",
        ),
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            help="Plan with the configuration this bucket runs in the configuration store "
            "(see `planforge bucket show`).",
        ),
    ] = None,
    context_kind: Annotated[
        str | None,
        typer.Option(
            "--context-kind",
            help="The kind of context given (for example portfolio); inferred from the context "
            "when absent. Only planners that read that kind are considered.",
        ),
    ] = None,
    explain: ExplainOption = False,
    as_json: JsonOption = False,
) -> None:
    """Select a planner (or take --planner) and make a plan for OBJECTIVE.

    The context is validated as its kind before any planner runs: a bad field is reported
    as itself. A progress bar follows the evaluation when stdout is a terminal (not with
    --json).
    """
    if bucket is not None and config is not None:
        fail("give either --bucket or --config, not both")
    context_data = read_context(context) if context is not None else {}
    reference: Any = config_reference(config) if config is not None else None
    bucket_toml: str | None = None
    if bucket is not None:
        bucket_toml, reference = _bucket_config(bucket)
    factory = open_factory()
    try:
        request = _PlanRequest(
            objective, context_data, planner, context_kind, reference, bucket_toml, explain
        )
        result, watcher = _plan_with(factory, request, follow=not as_json)
    finally:
        factory.close()
    _show(result, watcher, as_json=as_json, explain=explain)


def _show(result: Any, watcher: _PlanWatcher | None, *, as_json: bool, explain: bool) -> None:
    """The plan as JSON (with its explanation, when asked), or as tables."""
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_plan(result, watcher, explain=explain)


class _PlanRequest(NamedTuple):
    objective: str
    context: dict[str, Any]
    planner: str | None
    context_kind: str | None
    reference: Any  # the configuration chosen with --config or --bucket, if any
    bucket_toml: str | None
    explain: bool = False


def _plan_with(
    factory: PlannerFactory, request: _PlanRequest, *, follow: bool
) -> tuple[Any, _PlanWatcher | None]:
    """Admit, select, and plan, sending the chosen configuration the way the planner reads it.

    A planner that declares the run protocol gets a run carrying the configuration and
    whether to explain, and its events reach a watcher (a progress bar on a terminal, counts
    for the summary) unless `follow` is off (--json). Any other planner cannot be asked to
    explain: its plan has no explanation.
    """
    from planforge.contract import CONFIG_CONTEXT_KEY, Run, accepts_run  # --help stays light

    objective, context_data = request.objective, request.context
    kind = factory.admit_context(
        objective, context_data, planner=request.planner, context_kind=request.context_kind
    )
    name = request.planner or factory.select_best_planner_name(objective, context_kind=kind)
    instance = _shared_instance(factory, name)
    chosen = None
    if request.reference is not None:
        chosen = _chosen_config(instance, request.reference, request.bucket_toml)
    if not accepts_run(instance):
        if chosen is not None:
            context_data[CONFIG_CONTEXT_KEY] = chosen  # a planner without the protocol
        return factory.run_plan(objective, context_data, planner=name, context_kind=kind), None
    progress = _progress_bar() if follow and sys.stdout.isatty() else None
    watcher = _PlanWatcher(progress) if follow else None
    run = Run(f"cli-{uuid.uuid4().hex[:12]}", config=chosen, explain=request.explain, sink=watcher)
    try:
        plan = factory.run_plan(objective, context_data, planner=name, context_kind=kind, run=run)
    finally:
        if progress is not None:
            progress.stop()
    return plan, watcher


def _chosen_config(instance: Any, reference: Any, bucket_toml: str | None) -> Any:
    """The configuration to send, parsed up front where the planner can parse it, so a bad
    file is reported as itself and not as the planner's failure."""
    load = getattr(instance, "load_config", None)
    if callable(load):
        return load(reference)
    return bucket_toml or str(reference)


def _bucket_config(bucket: str) -> tuple[str, Any]:
    """The bucket's active configuration: its TOML and the validated HolisticConfig.

    A stored document is TOML text, never a preset name or a path, so it is parsed as such.
    """
    from planforge.configstore import config_label, parse_validated

    with open_store() as store:
        version = store.get_bucket_config(bucket)
    source = f"bucket {bucket}: {config_label(version)}"
    return version.toml, parse_validated(version.toml, source=source)


def _progress_bar() -> Any:
    """A started, transient rich progress bar (it disappears before the plan is printed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=rich_console(),
        transient=True,
    )
    progress.start()
    return progress


def _shared_instance(factory: PlannerFactory, name: str) -> Any:
    """The planner instance `run_plan` will use, or None when it cannot be built (run_plan
    then reports why, with the factory's bookkeeping)."""
    from planforge.errors import PlannerError

    try:
        return factory.get_planner(name)
    except PlannerError:
        return None


_AB_ROWS: tuple[tuple[str, str], ...] = (
    ("referee_end_state_score", "end-state score (A's scoring)"),
    ("end_state_score", "end-state score"),
    ("current_score", "current score"),
    ("improvement", "improvement"),
    ("steps", "steps"),
    ("cash_required", "cash required"),
    ("cash_generated", "cash generated"),
    ("sequences_evaluated", "sequences evaluated"),
    ("duration_ms", "duration (ms)"),
)


def _ab_cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("end_state_score", "current_score", "referee_end_state_score"):
        return f"{value:.6f}"
    if key == "improvement":
        return f"{value:+.6f}"
    if key in ("steps", "sequences_evaluated"):
        return f"{value:,}"
    return number_text(value)


@app.command("abtest")
@guarded
def abtest(
    config_a: Annotated[str, typer.Argument(help="Configuration A: a TOML file or a preset.")],
    config_b: Annotated[str, typer.Argument(help="Configuration B: a TOML file or a preset.")],
    context: Annotated[
        Path, typer.Option("--context", help="JSON or TOML file with the portfolio context.")
    ],
    objective: Annotated[
        str, typer.Option("--objective", help="The objective both plans serve.")
    ] = "Rebalance my portfolio",
    as_json: JsonOption = False,
) -> None:
    """Plan one context with two holistic configurations and say which plan is better.

    Both plans are scored again with A's score function (a configuration's weights change the
    score itself); the higher one wins, equal scores go to the plan with fewer steps.
    """
    from planforge.contract import CONFIG_CONTEXT_KEY
    from planforge.holistic import compare
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    context_data = read_context(context)
    context_data.pop(CONFIG_CONTEXT_KEY, None)  # the two configurations are the point here
    reference_a, reference_b = config_reference(config_a), config_reference(config_b)
    planner = HolisticPortfolioPlanner()
    engine_a, engine_b = planner.engine(reference_a), planner.engine(reference_b)
    result = compare(engine_a, engine_b, objective, context_data)
    data = result.to_dict()
    data["a"]["config"], data["b"]["config"] = str(reference_a), str(reference_b)
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table(title=f"A/B comparison for {objective!r}")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column(f"A: {reference_a}", justify="right")
    table.add_column(f"B: {reference_b}", justify="right")
    for key, label in _AB_ROWS:
        table.add_row(label, _ab_cell(key, data["a"][key]), _ab_cell(key, data["b"][key]))
    console = rich_console()
    console.print(table)
    winner = data["winner"]
    if winner == "tie":
        console.print("winner: tie (both configurations make the same plan)")
    else:
        console.print(f"winner: {winner.upper()} ({data[winner]['config']})", markup=False)
    for side in ("a", "b"):
        for warning in data[side]["warnings"]:
            console.print(f"warning ({side.upper()}): {warning}", markup=False)
