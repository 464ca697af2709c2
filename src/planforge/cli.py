"""The `planforge` command line: rich tables for people, `--json` for machines.

Heavy modules (pydantic, the factory) are imported inside the commands that need them, so
`planforge --help` stays fast. A planforge error ends the command with exit code 1 and one
line on stderr saying what happened and what to do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
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
app.add_typer(planners_app, name="planners")
app.add_typer(quarantine_app, name="quarantine")

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
    as_json: JsonOption = False,
) -> None:
    """Select a planner (or take --planner) and make a plan for OBJECTIVE."""
    context_data = _read_context(context) if context is not None else {}
    factory = _factory()
    try:
        result = factory.run_plan(objective, context_data, planner=planner)
    finally:
        factory.close()
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Plan {result.plan_id} by {result.planner.name} {result.planner.version}")
    for column in ("step", "action", "description", "depends on"):
        table.add_column(column)
    for step in result.steps:
        table.add_row(step.id, step.action, step.description, ", ".join(step.depends_on))
    console = _console()
    console.print(table)
    if result.score is not None:
        console.print(f"score: {result.score:.4f}")
    for warning in result.warnings:
        console.print(f"warning: {warning}")


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
