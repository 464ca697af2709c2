"""`planforge planners list/describe/check` and `planforge select`: what discovery found, what
the sandbox made of it, and which planner wins for an objective."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from planforge.cli._apps import app, planners_app
from planforge.cli._common import JsonOption, emit_json, guarded, open_factory, rich_console

if TYPE_CHECKING:
    from planforge.factory import Selection

__all__ = ["planners_check", "planners_describe", "planners_list", "select"]


@planners_app.command("list")
@guarded
def planners_list(
    all_: Annotated[
        bool, typer.Option("--all", help="Include quarantined and left-out planners.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the planners discovery found; `unchecked` ones have not passed the sandbox yet."""
    factory = open_factory()
    factory.discover()
    names = factory.list_planners(include_inactive=all_)
    rows = [factory.describe_planner(name) for name in names]
    if as_json:
        emit_json(rows)
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
    rich_console().print(table)
    if any(row["status"] == "unchecked" for row in rows):
        typer.echo(
            "unchecked: not passed by the sandbox yet (each is checked on first use); "
            "run `planforge planners check` to check them now"
        )


@planners_app.command("check")
@guarded
def planners_check(
    names: Annotated[
        list[str] | None, typer.Argument(help="Planners to check (default: every one found).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check planners in the sandbox now; exit code 1 when any is quarantined.

    A pass is remembered in the state dir, so every process shows the planner as active until
    its source file changes. A planner that fails is quarantined with the reason.
    """
    with open_factory() as factory:
        results = factory.check_planners(names or None)
    if as_json:
        emit_json(results)
    else:
        _print_checks(results)
    if any(row["result"] == "quarantined" for row in results):
        raise typer.Exit(1)


def _print_checks(results: list[dict[str, Any]]) -> None:
    if not results:
        typer.echo("no planner found; install a plugin or set FACTORY_PLUGIN_DIRS")
    for row in results:
        if row["result"] == "passed":
            detail = f"self_test {row['self_test']}, {row['duration_ms']:.0f} ms"
            typer.echo(f"{row['name']}: passed ({detail})")
        else:
            typer.echo(f"{row['name']}: {row['result']}: {row['reason']}")
    if any(row["result"] == "quarantined" for row in results):
        typer.echo(
            "a quarantined planner is checked again when its source file changes, or after "
            "`planforge quarantine release NAME`"
        )


@planners_app.command("describe")
@guarded
def planners_describe(name: str, as_json: JsonOption = False) -> None:
    """Show everything known about one planner."""
    factory = open_factory()
    description = factory.describe_planner(name)
    if as_json:
        emit_json(description)
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
    rich_console().print(table)


@app.command("select")
@guarded
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
    context_kind: Annotated[
        str | None,
        typer.Option("--context-kind", help="Exclude planners that read another context kind."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pick the best planner for OBJECTIVE."""
    factory = open_factory()
    selection = factory.explain_selection(
        objective,
        cap or [],
        not no_prefer_production,
        None,
        strict=strict,
        context_kind=context_kind,
    )
    if selection.winner is None:
        from planforge.errors import NoActivePlannersError

        reasons = {item.name: item.reason for item in selection.exclusions}
        raise NoActivePlannersError(objective, reasons)
    if as_json:
        emit_json(
            selection.to_dict()
            if explain
            else {"winner": selection.winner, "score": selection.winner_score}
        )
        return
    if not explain:
        typer.echo(selection.winner)
        return
    _print_selection(objective, selection)


def _print_selection(objective: str, selection: Selection) -> None:
    """Every candidate's score in a table, then the reason each excluded one was left out."""
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
    console = rich_console()
    console.print(table)
    for exclusion in selection.exclusions:
        console.print(f"excluded {exclusion.name}: {exclusion.reason}")
