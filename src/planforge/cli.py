"""The `planforge` command line: rich tables for people, `--json` for machines.

Heavy modules (pydantic, the factory) are imported inside the commands that need them, so
`planforge --help` stays fast. A planforge error ends the command with exit code 1 and one
line on stderr saying what happened and what to do.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from planforge.configstore.records import BucketAssignment, ConfigVersion, CreateResult, Preset
    from planforge.configstore.store import ConfigStore
    from planforge.factory.core import PlannerFactory

app = typer.Typer(
    name="planforge",
    help="Planner factory: discover planners without running them, select one and explain why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
planners_app = typer.Typer(help="List and describe discovered planners.", no_args_is_help=True)
quarantine_app = typer.Typer(help="See and release quarantined planners.", no_args_is_help=True)
config_app = typer.Typer(
    help="Holistic planner configurations: check them (schema, validate, dry-run) and keep "
    "them as versions (create, history, show, diff, export, import, clone).",
    no_args_is_help=True,
)
bucket_app = typer.Typer(
    help="Point buckets at configuration versions; see and roll back their history.",
    no_args_is_help=True,
)
preset_app = typer.Typer(help="List, share and rate configuration presets.", no_args_is_help=True)
db_app = typer.Typer(help="The configuration store's database.", no_args_is_help=True)
modules_app = typer.Typer(
    help="List, describe and document holistic planner modules.", no_args_is_help=True
)
app.add_typer(planners_app, name="planners")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(config_app, name="config")
app.add_typer(modules_app, name="modules")
app.add_typer(bucket_app, name="bucket")
app.add_typer(preset_app, name="preset")
app.add_typer(db_app, name="db")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"error: {first_line}", err=True)
    raise typer.Exit(code)


def _factory() -> PlannerFactory:
    from planforge.errors import SettingsError
    from planforge.factory.core import PlannerFactory
    from planforge.logs import configure_logging
    from planforge.settings import load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(exc.message)
    configure_logging(os.environ.get("FACTORY_LOG_LEVEL", "WARNING"))
    return PlannerFactory(settings)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def _console() -> Any:
    from rich.console import Console

    return Console()


def _guard(command: Any) -> Any:
    """Turn planforge errors into one line on stderr and exit code 1."""
    import functools

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from planforge.errors import PlannerError

        try:
            return command(*args, **kwargs)
        except PlannerError as exc:
            _fail(exc.message)
        except (OSError, ValueError) as exc:
            _fail(f"{type(exc).__name__}: {exc}")

    return wrapper


def _version(value: bool) -> None:
    if value:
        from planforge import __version__

        typer.echo(f"planforge {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """planforge: the planner factory."""


@planners_app.command("list")
@_guard
def planners_list(
    all_: Annotated[
        bool, typer.Option("--all", help="Include quarantined and left-out planners.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the planners discovery found."""
    factory = _factory()
    factory.discover()
    names = factory.list_planners(include_inactive=all_)
    rows = [factory.describe_planner(name) for name in names]
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} planner(s)")
    widest = max((len(row["name"]) for row in rows), default=4)
    table.add_column("name", min_width=widest, no_wrap=True)
    for column in ("version", "tier", "status", "rel."):
        table.add_column(column, no_wrap=True)
    table.add_column("capabilities")
    table.add_column("from")
    for row in rows:
        table.add_row(
            row["name"],
            row["version"],
            row["tier"],
            row["status"],
            f"{row['reliability']:.2f}",
            " ".join(row["capabilities"]),
            row["origin"] or row["source"],
        )
    _console().print(table)


@planners_app.command("describe")
@_guard
def planners_describe(name: str, as_json: JsonOption = False) -> None:
    """Show everything known about one planner."""
    factory = _factory()
    description = factory.describe_planner(name)
    if as_json:
        _emit_json(description)
        return
    from rich.table import Table

    table = Table(title=name, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in description.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = json.dumps(value, default=str)
        table.add_row(key, "" if value is None else str(value))
    _console().print(table)


@app.command("select")
@_guard
def select(
    objective: str,
    cap: Annotated[
        list[str] | None,
        typer.Option("--cap", help="A required capability (repeat for several)."),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show every score.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exclude planners missing a capability.")
    ] = False,
    no_prefer_production: Annotated[
        bool, typer.Option("--no-prefer-production", help="Do not favour production planners.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Pick the best planner for OBJECTIVE."""
    factory = _factory()
    selection = factory.explain_selection(
        objective, cap or [], not no_prefer_production, None, strict=strict
    )
    if selection.winner is None:
        from planforge.errors import NoActivePlannersError

        reasons = {item.name: item.reason for item in selection.exclusions}
        raise NoActivePlannersError(objective, reasons)
    if as_json:
        _emit_json(
            selection.to_dict()
            if explain
            else {"winner": selection.winner, "score": selection.winner_score}
        )
        return
    if not explain:
        typer.echo(selection.winner)
        return
    from rich.table import Table

    table = Table(title=f"Selection for {objective!r}: {selection.winner}")
    widest = max((len(score.name) for score in selection.scores), default=4)
    table.add_column("name", min_width=widest, no_wrap=True)
    for column in ("total", "match", "rel.", "objective", "bonus"):
        table.add_column(column, no_wrap=True, justify="right")
    for score in selection.scores:
        bonus = (
            score.tier_bonus + score.production_bonus + score.deep_index_boost + score.hotspot_boost
        )
        table.add_row(
            score.name,
            f"{score.total:.4f}",
            f"{score.capability_match:.2f}",
            f"{score.reliability_used:.3f}",
            f"{score.objective_relevance:.2f}",
            f"{bonus:+.2f}",
        )
    console = _console()
    console.print(table)
    for exclusion in selection.exclusions:
        console.print(f"excluded {exclusion.name}: {exclusion.reason}")


def _read_context(path: Path) -> dict[str, Any]:
    if not path.exists():
        _fail(f"context file {path} not found; give a JSON or TOML file with --context")
    if not path.is_file():
        _fail(f"context {path} is not a file; give a JSON or TOML file with --context")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            _fail(f"{path} is not valid TOML: {exc}")
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            _fail(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        _fail(f"{path} must hold a JSON object or TOML table at the top level")
    return data


def _config_reference(value: str) -> str | Path:
    """A preset name as it is, otherwise an existing file; anything else fails naming it."""
    from planforge.portfolio.planner import PRESETS

    if value in PRESETS:
        return value
    path = Path(value)
    if path.is_file():
        return path
    presets = ", ".join(PRESETS)
    if path.exists():
        _fail(f"configuration {value} is not a file; give a TOML file or a preset ({presets})")
    _fail(f"configuration file {value} not found; give a TOML file or a preset ({presets})")


def _number(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _quantity(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer():
            return f"{value:,.0f}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


class _PlanWatcher:
    """Follows a planner's engine events: a progress bar on a terminal, counts for the summary.

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
        elif kind == "evaluation_progress":
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


def _print_plan(result: Any, watcher: _PlanWatcher | None) -> None:
    from rich.table import Table

    console = _console()
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
            _quantity(params.get("quantity")),
            _number(params.get("value_base", params.get("value"))),
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
            f"cash: required {_number(metrics.get('cash_required', 0.0))}, "
            f"generated {_number(metrics.get('cash_generated', 0.0))}",
            highlight=False,
        )
    summary = watcher.summary() if watcher is not None else None
    if summary:
        console.print(summary, highlight=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)


@app.command("plan")
@_guard
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
            "(default, conservative, aggressive). Sent as the context key planner_config.",
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
    as_json: JsonOption = False,
) -> None:
    """Select a planner (or take --planner) and make a plan for OBJECTIVE.

    A progress bar follows the evaluation when stdout is a terminal (not with --json).
    """
    if bucket is not None and config is not None:
        _fail("give either --bucket or --config, not both")
    context_data = _read_context(context) if context is not None else {}
    reference: Any = _config_reference(config) if config is not None else None
    bucket_toml: str | None = None
    if bucket is not None:
        bucket_toml, reference = _bucket_config(bucket)
    factory = _factory()
    unsubscribe: Any = None
    progress: Any = None
    watcher: _PlanWatcher | None = None
    try:
        name = planner or factory.select_best_planner_name(objective)
        instance = _shared_instance(factory, name)
        if reference is not None:
            # Parse up front so a bad file is reported as itself, not as a planner failure.
            load = getattr(instance, "load_config", None)
            if callable(load):
                context_data["planner_config"] = load(reference)
            else:
                context_data["planner_config"] = bucket_toml or str(reference)
        parse = getattr(getattr(instance, "domain", None), "parse_context", None)
        if callable(parse):
            # A bad field is reported as itself, not as a planner failure.
            parse({k: v for k, v in context_data.items() if k != "planner_config"})
        subscribe = getattr(getattr(instance, "events", None), "subscribe", None)
        if not as_json and callable(subscribe):
            progress = _progress_bar() if sys.stdout.isatty() else None
            watcher = _PlanWatcher(progress)
            unsubscribe = subscribe(watcher)
        result = factory.run_plan(objective, context_data, planner=name)
    finally:
        if unsubscribe is not None:
            unsubscribe()
        if progress is not None:
            progress.stop()
        factory.close()
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_plan(result, watcher)


def _bucket_config(bucket: str) -> tuple[str, Any]:
    """The bucket's active configuration: its TOML and the validated HolisticConfig.

    A stored document is TOML text, never a preset name or a path, so it is parsed as such.
    """
    from planforge.configstore.diff import config_label, parse_validated

    with _store() as store:
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
        console=_console(),
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


# -- holistic configuration --------------------------------------------------------------------


def _config_failure(exc: Any, source: str, as_json: bool) -> NoReturn:
    """A configuration that does not parse: JSON on stdout with --json, one line on stderr."""
    if as_json:
        _emit_json(
            {
                "valid": False,
                "source": getattr(exc, "source", source),
                "key": getattr(exc, "key", None),
                "line": getattr(exc, "line", None),
                "column": getattr(exc, "column", None),
                "error": exc.message,
            }
        )
    _fail(exc.message)


@config_app.command("schema")
@_guard
def config_schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema to this file.")
    ] = None,
) -> None:
    """Print the JSON Schema of a holistic configuration (for TOML editors' completion).

    Point a TOML file at it with a top-level `"$schema" = "path/to/schema.json"` line.
    """
    from planforge.holistic.config import config_json_schema
    from planforge.holistic.registry import default_registry
    from planforge.portfolio.domain import PortfolioSettings

    text = json.dumps(config_json_schema(default_registry(), PortfolioSettings), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


@config_app.command("validate")
@_guard
def config_validate(
    file: Annotated[str, typer.Argument(help="A TOML file or a preset name.")],
    as_json: JsonOption = False,
) -> None:
    """Parse and check a configuration; exit 1 with the offending key when it is not valid."""
    from planforge.holistic.config import ConfigError, config_digest
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    reference = _config_reference(file)
    try:
        config = HolisticPortfolioPlanner().load_config(reference)
    except ConfigError as exc:
        _config_failure(exc, str(reference), as_json)
    enabled = config.enabled_keys()
    digest = config_digest(config)
    if as_json:
        _emit_json(
            {
                "valid": True,
                "source": config.source,
                "digest": digest,
                "modules_enabled": enabled,
                "planner": config.planner.model_dump(mode="json"),
                "domain": config.domain.model_dump(mode="json"),
            }
        )
        return
    typer.echo(f"valid: {config.source} ({len(enabled)} modules enabled, digest {digest[:12]})")


@config_app.command("dry-run")
@_guard
def config_dry_run(
    file: Annotated[str, typer.Argument(help="A TOML file or a preset name.")],
    as_json: JsonOption = False,
) -> None:
    """Load everything a configuration enables and estimate the work; plan nothing.

    Exit 1 when the configuration is not valid or a module it enables cannot be loaded.
    """
    from planforge.holistic.config import ConfigError
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    reference = _config_reference(file)
    try:
        report = HolisticPortfolioPlanner().engine(reference).dry_run()
    except ConfigError as exc:
        _config_failure(exc, str(reference), as_json)
    if as_json:
        _emit_json({"source": str(reference), **report.to_dict()})
        return
    typer.echo(f"valid: {'yes' if report.valid else 'no'} ({reference})")
    typer.echo(f"modules loaded ({len(report.modules_loaded)}):")
    for key in report.modules_loaded:
        typer.echo(f"  {key}")
    typer.echo(f"estimated sequences: {report.estimated_sequences:,}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}")
    for error in report.errors:
        typer.echo(f"error: {error}")
    if not report.valid:
        raise typer.Exit(1)


# -- holistic modules --------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    from planforge.holistic.modules import KINDS

    if kind not in KINDS:
        _fail(f"{kind!r} is not a module kind; kinds are {', '.join(KINDS)}")


@modules_app.command("list")
@_guard
def modules_list(
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (e.g. filters).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the registered modules (metadata only: nothing is imported)."""
    from planforge.holistic.registry import default_registry

    if kind is not None:
        _check_kind(kind)
    registry = default_registry()
    modules = registry.list(kind)
    if as_json:
        _emit_json([{"key": f"{m.kind}.{m.name}", **m.to_dict()} for m in modules])
        return
    from rich.table import Table

    table = Table(title=f"{len(modules)} module(s)")
    table.add_column("kind", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("tags")
    table.add_column("description")
    for metadata in modules:
        table.add_row(
            metadata.kind,
            metadata.name,
            metadata.version,
            ", ".join(metadata.tags),
            metadata.description,
        )
    console = _console()
    console.print(table)
    for problem in registry.problems():
        console.print(
            f"problem: {problem.target} ({problem.origin}): {problem.reason}", markup=False
        )


@modules_app.command("describe")
@_guard
def modules_describe(
    kind: Annotated[str, typer.Argument(help="The module kind, e.g. opportunity_calculators.")],
    name: Annotated[str, typer.Argument(help="The module name, e.g. profit_taking.")],
    as_json: JsonOption = False,
) -> None:
    """Metadata, docstring, default parameters and the parameters' schema of one module."""
    from planforge.holistic.docs import param_docs
    from planforge.holistic.registry import default_registry

    _check_kind(kind)
    registry = default_registry()
    info = registry.describe(kind, name)
    rows = [] if "load_error" in info else param_docs(registry.load(kind, name).Params)
    if as_json:
        _emit_json({**info, "params": [row.to_dict() for row in rows]})
        return
    from rich.table import Table

    console = _console()
    table = Table(title=info["key"], show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in ("version", "author", "description", "tags", "dependencies", "target", "source"):
        value = info.get(key)
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        table.add_row(key, "" if value is None else str(value))
    console.print(table)
    if info.get("docstring"):
        console.print(info["docstring"], markup=False, highlight=False)
    if "load_error" in info:
        console.print(f"parameters unknown: {info['load_error']}", markup=False)
        return
    if not rows:
        console.print("no parameters")
        return
    params = Table(title="params")
    for column in ("name", "type", "default", "bounds", "description"):
        params.add_column(column, no_wrap=column != "description")
    for row in rows:
        params.add_row(row.name, row.type, row.default, row.bounds, row.description)
    console.print(params)


@modules_app.command("docs")
@_guard
def modules_docs(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the Markdown to this file.")
    ] = None,
) -> None:
    """Markdown documentation of every module, from its metadata, docstring and params."""
    from planforge.holistic.docs import module_docs
    from planforge.holistic.registry import default_registry

    text = module_docs(default_registry())
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


# -- A/B comparison ----------------------------------------------------------------------------


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
    return _number(value)


@app.command("abtest")
@_guard
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
    from planforge.holistic.abtest import compare
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    context_data = _read_context(context)
    context_data.pop("planner_config", None)  # the two configurations are the point here
    reference_a, reference_b = _config_reference(config_a), _config_reference(config_b)
    planner = HolisticPortfolioPlanner()
    engine_a, engine_b = planner.engine(reference_a), planner.engine(reference_b)
    result = compare(engine_a, engine_b, objective, context_data)
    data = result.to_dict()
    data["a"]["config"], data["b"]["config"] = str(reference_a), str(reference_b)
    if as_json:
        _emit_json(data)
        return
    from rich.table import Table

    table = Table(title=f"A/B comparison for {objective!r}")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column(f"A: {reference_a}", justify="right")
    table.add_column(f"B: {reference_b}", justify="right")
    for key, label in _AB_ROWS:
        table.add_row(label, _ab_cell(key, data["a"][key]), _ab_cell(key, data["b"][key]))
    console = _console()
    console.print(table)
    winner = data["winner"]
    if winner == "tie":
        console.print("winner: tie (both configurations make the same plan)")
    else:
        console.print(f"winner: {winner.upper()} ({data[winner]['config']})", markup=False)
    for side in ("a", "b"):
        for warning in data[side]["warnings"]:
            console.print(f"warning ({side.upper()}): {warning}", markup=False)


@app.command("health")
@_guard
def health(
    min_required: Annotated[int, typer.Option("--min", help="Active planners required.")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Report readiness; exit code 1 when fewer than --min planners are active."""
    report = _factory().health_check(min_required)
    if as_json:
        _emit_json(report)
    else:
        state = "ready" if report["ready"] else "NOT READY"
        typer.echo(
            f"{state}: {report['active']} active, {report['quarantined']} quarantined, "
            f"{report['records']} found, {report['import_failures']} import failure(s), "
            f"average reliability {report['avg_reliability']:.3f}"
        )
        for suggestion in report["suggestions"]:
            typer.echo(f"  - {suggestion}")
    if not report["ready"]:
        raise typer.Exit(1)


@app.command("diagnostics")
@_guard
def diagnostics(
    as_json: JsonOption = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON diagnostics here.")
    ] = None,
) -> None:
    """Everything the factory knows: records, problems, shadowed names, profiles."""
    factory = _factory()
    if output is not None:
        path = factory.export_diagnostics(output)
        typer.echo(f"wrote {path}")
        return
    if as_json:
        _emit_json(factory.diagnostics_json())
    else:
        typer.echo(factory.diagnostics_report())


@quarantine_app.command("list")
@_guard
def quarantine_list(as_json: JsonOption = False) -> None:
    """Planners whose sandboxed import failed, with the reason."""
    entries = _factory().list_quarantined()
    if as_json:
        _emit_json(entries)
        return
    if not entries:
        typer.echo("no planner is quarantined")
        return
    for entry in entries:
        state = "" if entry["current"] else " (source changed: will be checked again)"
        typer.echo(f"{entry['planner_name']} ({entry['module']}): {entry['reason']}{state}")


@quarantine_app.command("release")
@_guard
def quarantine_release(name: str) -> None:
    """Release NAME so it is checked again in the sandbox on next use."""
    if not _factory().release_quarantine(name):
        _fail(f"{name!r} is not quarantined; see `planforge quarantine list`")
    typer.echo(f"released {name}")


# -- configuration store: versions, buckets, presets --------------------------------------------


ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who the change is recorded as (default: your OS user name)."),
]


def _actor(value: str | None) -> str:
    from planforge.configstore.transfer import default_actor

    return value if value else default_actor()


def _store() -> ConfigStore:
    """The store named by PLANFORGE_DATABASE_URL, else the SQLite file under PLANFORGE_HOME."""
    from planforge.configstore.store import ConfigStore

    return ConfigStore.from_environment()


def _read_document(path: Path, what: str = "configuration") -> str:
    if not path.exists():
        _fail(f"{what} file {path} not found; give the path of a TOML file")
    if not path.is_file():
        _fail(f"{what} {path} is not a file; give the path of a TOML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8")


_NAME_VERSION = re.compile(r"^(?P<name>[^:]+):v?(?P<version>\d+)$")


def _resolve(store: ConfigStore, reference: str) -> ConfigVersion:
    """A stored version: an id (12), NAME:VERSION (core:3) or a NAME (its active version)."""
    text = reference.strip()
    if text.isdigit():
        return store.get_config_by_id(int(text))
    match = _NAME_VERSION.match(text)
    if match:
        return store.get_version(match["name"], int(match["version"]))
    return store.get_active(text)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _short_when(value: Any) -> str:
    """Minutes are enough in a table; `--json` and `show` have the full timestamp."""
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _record(record: Any) -> dict[str, Any]:
    """A store record as JSON-ready data (timestamps in ISO 8601)."""
    import dataclasses
    from datetime import datetime

    data = dataclasses.asdict(record)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
        elif isinstance(value, tuple):
            data[key] = list(value)
    return data


def _version_table(title: str, versions: list[ConfigVersion], *, names: bool = True) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("id", no_wrap=True, justify="right")
    if names:
        table.add_column("name", no_wrap=True)
    for column in ("version", "active", "created (UTC)", "by", "digest"):
        table.add_column(column, no_wrap=True)
    table.add_column("title", min_width=12)
    for item in versions:
        cells = [str(item.id)] + ([item.name] if names else [])
        table.add_row(
            *cells,
            f"v{item.version}",
            "yes" if item.active else "",
            _short_when(item.created_at),
            item.created_by,
            item.digest[:10],
            item.title,
        )
    return table


def _print_version(version: ConfigVersion, *, with_toml: bool = True) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{version.name} v{version.version} (#{version.id})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        ("title", version.title),
        ("description", version.description or ""),
        (f"active version of {version.name}", "yes" if version.active else "no"),
        ("created", _when(version.created_at)),
        ("created by", version.created_by),
        ("parent", "" if version.parent_id is None else f"#{version.parent_id}"),
        ("digest", version.digest),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if with_toml:
        typer.echo(version.toml, nl=not version.toml.endswith("\n"))


def _created(result: CreateResult, as_json: bool) -> None:
    version = result.config
    if as_json:
        _emit_json({"created": result.created, "config": _record(version)})
        return
    if result.created:
        typer.echo(f"created {version.name} v{version.version} (id {version.id})")
    else:
        typer.echo(
            f"unchanged: {version.name} v{version.version} (id {version.id}) already has this "
            "content; no new version was stored"
        )


@config_app.command("create")
@_guard
def config_create(
    name: Annotated[str, typer.Argument(help="The configuration's name (its version group).")],
    title: Annotated[str, typer.Option("--title", help="A short human title.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="The TOML configuration.")],
    description: Annotated[
        str | None, typer.Option("--description", help="What this version is for.")
    ] = None,
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version",
            help="Fail unless this is the current version (guards against concurrent edits).",
        ),
    ] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate FILE and store it as the next version of NAME (it becomes the active one)."""
    text = _read_document(file)
    with _store() as store:
        result = store.create_new_version(
            name,
            title,
            text,
            description=description,
            created_by=_actor(actor),
            expected_version=expected_version,
        )
    _created(result, as_json)


@config_app.command("list")
@_guard
def config_list(as_json: JsonOption = False) -> None:
    """The active version of every stored configuration, by name."""
    with _store() as store:
        versions = store.list_configs()
    if as_json:
        _emit_json([_record(item) for item in versions])
        return
    _console().print(_version_table(f"{len(versions)} configuration(s)", versions))


@config_app.command("history")
@_guard
def config_history(name: str, as_json: JsonOption = False) -> None:
    """Every version of NAME, oldest first."""
    with _store() as store:
        versions = store.get_version_history(name)
    if not versions:
        from planforge.configstore.errors import ConfigNotFound

        raise ConfigNotFound(name=name)
    if as_json:
        _emit_json([_record(item) for item in versions])
        return
    _console().print(_version_table(f"{name}: {len(versions)} version(s)", versions, names=False))


@config_app.command("show")
@_guard
def config_show(
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    as_json: JsonOption = False,
) -> None:
    """One stored version: its metadata and TOML."""
    with _store() as store:
        version = _resolve(store, reference)
    if as_json:
        _emit_json(_record(version))
        return
    _print_version(version)


def _diff_side(store: ConfigStore, reference: str) -> tuple[str, str]:
    """(label, TOML) of a stored version, or of a file when REFERENCE is an existing path."""
    from planforge.configstore.diff import config_label

    path = Path(reference)
    if not reference.strip().isdigit() and not _NAME_VERSION.match(reference) and path.is_file():
        return str(path), _read_document(path)
    version = _resolve(store, reference)
    return config_label(version), version.toml


@config_app.command("diff")
@_guard
def config_diff(
    a: Annotated[str, typer.Argument(help="An id, NAME:VERSION, NAME or a TOML file.")],
    b: Annotated[str, typer.Argument(help="An id, NAME:VERSION, NAME or a TOML file.")],
    semantic: Annotated[
        bool,
        typer.Option(
            "--semantic", help="Compare what the planner runs (modules, params, [planner] keys)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """How B differs from A: a unified text diff, or with --semantic, by meaning."""
    from planforge.configstore.diff import semantic_diff, unified_diff

    with _store() as store:
        (a_label, a_text), (b_label, b_text) = _diff_side(store, a), _diff_side(store, b)
    if semantic:
        diff = semantic_diff(a_text, b_text, a_label=a_label, b_label=b_label)
        if as_json:
            _emit_json({"a": a_label, "b": b_label, **diff.to_dict()})
            return
        if diff.is_empty:
            typer.echo(f"no difference in behaviour between {a_label} and {b_label}")
            return
        typer.echo(f"from {a_label} to {b_label}:")
        for line in diff.lines():
            typer.echo(f"  {line}")
        return
    text = unified_diff(a_text, b_text, a_label=a_label, b_label=b_label)
    if as_json:
        _emit_json({"a": a_label, "b": b_label, "identical": not text, "diff": text})
        return
    if not text:
        typer.echo(f"{a_label} and {b_label} are identical")
        return
    typer.echo(text, nl=False)


@config_app.command("export")
@_guard
def config_export(
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """A stored version as a TOML file with a metadata header (importable elsewhere)."""
    from planforge.configstore.transfer import export_config

    with _store() as store:
        text = export_config(_resolve(store, reference))
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text, encoding="utf-8", newline="")
    typer.echo(f"wrote {output}")


@config_app.command("import")
@_guard
def config_import(
    file: Annotated[Path, typer.Argument(help="An exported file, or any TOML configuration.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Store under this name, not the header's.")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Use this title, not the header's.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Use this description.")
    ] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate FILE and store it as the next version of its name."""
    from planforge.configstore.transfer import import_config

    text = _read_document(file)
    with _store() as store:
        result = import_config(
            store, text, name=name, title=title, description=description, created_by=_actor(actor)
        )
    _created(result, as_json)


@config_app.command("clone")
@_guard
def config_clone(
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    name: Annotated[str, typer.Option("--name", help="The new configuration's name.")],
    title: Annotated[str, typer.Option("--title", help="The new configuration's title.")],
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a stored version under a new name (same TOML, same digest)."""
    from planforge.configstore.transfer import clone_config

    with _store() as store:
        source = _resolve(store, reference)
        result = clone_config(store, source.id, name=name, title=title, created_by=_actor(actor))
    _created(result, as_json)


def _assignment_table(title: str, assignments: list[BucketAssignment]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("#", "assigned (UTC)", "by", "config", "id"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", min_width=16)
    for assignment in assignments:
        table.add_row(
            str(assignment.id),
            _short_when(assignment.assigned_at),
            assignment.assigned_by,
            f"{assignment.config_name} v{assignment.config_version}",
            str(assignment.config_id),
            assignment.reason or "",
        )
    return table


def _assigned(assignment: BucketAssignment, as_json: bool) -> None:
    if as_json:
        _emit_json(_record(assignment))
        return
    typer.echo(
        f"bucket {assignment.bucket} now runs {assignment.config_name} "
        f"v{assignment.config_version} (id {assignment.config_id})"
    )


@bucket_app.command("assign")
@_guard
def bucket_assign(
    bucket: str,
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in history).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make BUCKET run a stored configuration version."""
    with _store() as store:
        version = _resolve(store, reference)
        assignment = store.assign_config_to_bucket(
            bucket, version.id, assigned_by=_actor(actor), reason=reason
        )
    _assigned(assignment, as_json)


@bucket_app.command("list")
@_guard
def bucket_list(as_json: JsonOption = False) -> None:
    """Every bucket that has a configuration, with what it runs."""
    with _store() as store:
        rows = [(bucket, store.get_bucket_config(bucket)) for bucket in store.list_buckets()]
    if as_json:
        _emit_json([{"bucket": bucket, "config": _record(config)} for bucket, config in rows])
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} bucket(s)")
    for column in ("bucket", "config", "id", "digest"):
        table.add_column(column, no_wrap=True)
    for bucket, config in rows:
        table.add_row(
            bucket, f"{config.name} v{config.version}", str(config.id), config.digest[:12]
        )
    _console().print(table)


@bucket_app.command("show")
@_guard
def bucket_show(
    bucket: str,
    toml: Annotated[bool, typer.Option("--toml", help="Also print the TOML.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The configuration BUCKET runs now, and who assigned it when."""
    with _store() as store:
        config = store.get_bucket_config(bucket)
        history = store.bucket_history(bucket)
    current = history[-1] if history else None
    if as_json:
        _emit_json(
            {
                "bucket": bucket,
                "config": _record(config),
                "assignment": _record(current) if current is not None else None,
            }
        )
        return
    if current is not None:
        typer.echo(
            f"bucket {bucket}: {config.name} v{config.version} (id {config.id}), assigned "
            f"{_when(current.assigned_at)} by {current.assigned_by}"
            + (f": {current.reason}" if current.reason else "")
        )
    _print_version(config, with_toml=toml)


@bucket_app.command("history")
@_guard
def bucket_history(bucket: str, as_json: JsonOption = False) -> None:
    """Every assignment of BUCKET, oldest first (rollbacks included)."""
    with _store() as store:
        history = store.bucket_history(bucket)
    if not history:
        from planforge.configstore.errors import BucketNotFound

        raise BucketNotFound(bucket)
    if as_json:
        _emit_json([_record(item) for item in history])
        return
    _console().print(_assignment_table(f"bucket {bucket}: {len(history)} assignment(s)", history))


@bucket_app.command("rollback")
@_guard
def bucket_rollback(
    bucket: str,
    name: Annotated[str, typer.Argument(help="The configuration's name.")],
    version: Annotated[int, typer.Argument(help="The version to go back to.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in history).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point BUCKET back at NAME's VERSION; recorded as a new assignment, nothing is erased."""
    with _store() as store:
        assignment = store.rollback_to_version(
            bucket, name, version, assigned_by=_actor(actor), reason=reason
        )
    _assigned(assignment, as_json)


def _preset_row(preset: Preset) -> dict[str, Any]:
    return {key: value for key, value in _record(preset).items() if key != "toml"}


def _preset_reference(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


@preset_app.command("list")
@_guard
def preset_list(
    tag: Annotated[str | None, typer.Option("--tag", help="Only presets with this tag.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Shared presets, with downloads and ratings."""
    with _store() as store:
        presets = store.list_presets(tag=tag)
    if as_json:
        _emit_json([_preset_row(item) for item in presets])
        return
    from rich.table import Table

    table = Table(title=f"{len(presets)} preset(s)" + (f" tagged {tag}" if tag else ""))
    for column in ("id", "name", "author"):
        table.add_column(column, no_wrap=True)
    table.add_column("tags")
    table.add_column("downloads", justify="right", no_wrap=True)
    table.add_column("rating", no_wrap=True)
    table.add_column("description", min_width=16, ratio=1)
    for item in presets:
        rating = "" if item.rating is None else f"{item.rating:.1f} ({item.ratings})"
        table.add_row(
            str(item.id),
            item.name,
            item.author,
            ", ".join(item.tags),
            str(item.downloads),
            rating,
            item.description,
        )
    _console().print(table)


@preset_app.command("show")
@_guard
def preset_show(
    reference: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    as_json: JsonOption = False,
) -> None:
    """One preset with its TOML (counts as a download)."""
    with _store() as store:
        preset = store.get_preset(_preset_reference(reference))
    if as_json:
        _emit_json(_record(preset))
        return
    rating = "no ratings" if preset.rating is None else f"{preset.rating:.1f}/5"
    typer.echo(
        f"# preset {preset.name} (id {preset.id}) by {preset.author}; tags: "
        f"{', '.join(preset.tags) or 'none'}; {preset.downloads} downloads; {rating}"
    )
    typer.echo(f"# {preset.description}")
    typer.echo(preset.toml, nl=not preset.toml.endswith("\n"))


@preset_app.command("create")
@_guard
def preset_create(
    name: str,
    file: Annotated[Path, typer.Option("--file", "-f", help="The TOML configuration.")],
    description: Annotated[str, typer.Option("--description", help="What it is good for.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="A tag (repeat for several).")
    ] = None,
    author: Annotated[
        str | None, typer.Option("--author", help="Default: your OS user name.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Share a validated configuration as a preset."""
    text = _read_document(file)
    with _store() as store:
        preset = store.create_preset(name, description, text, _actor(author), tuple(tag or ()))
    if as_json:
        _emit_json(_preset_row(preset))
        return
    typer.echo(f"created preset {preset.name} (id {preset.id})")


@preset_app.command("rate")
@_guard
def preset_rate(
    reference: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    rating: Annotated[int, typer.Argument(help="1 (poor) to 5 (excellent).")],
    as_json: JsonOption = False,
) -> None:
    """Rate a preset from 1 to 5."""
    with _store() as store:
        preset = store.rate_preset(_preset_reference(reference), rating)
    if as_json:
        _emit_json(_preset_row(preset))
        return
    assert preset.rating is not None  # just rated
    typer.echo(f"{preset.name}: {preset.rating:.2f}/5 from {preset.ratings} rating(s)")


@db_app.command("upgrade")
@_guard
def db_upgrade() -> None:
    """Apply the configuration store's migrations (also done automatically on first use)."""
    with _store() as store:
        store.migrate()
        where = store.url.render_as_string(hide_password=True)
    typer.echo(f"database is up to date: {where}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
