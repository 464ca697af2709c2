"""`planforge health`, `planforge diagnostics` and `planforge quarantine ...`: is the factory
ready, and what went wrong when it is not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planforge.cli._apps import app, quarantine_app
from planforge.cli._common import JsonOption, emit_json, fail, guarded, open_factory

__all__ = ["diagnostics", "health", "quarantine_list", "quarantine_release"]


@app.command("health")
@guarded
def health(
    min_required: Annotated[
        int, typer.Option("--min", help="Selectable (active or unchecked) planners required.")
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Report readiness; exit code 1 when fewer than --min planners are selectable.

    Selectable means active (passed by the sandbox) or unchecked (checked on first use).
    """
    report = open_factory().health_check(min_required)
    if as_json:
        emit_json(report)
    else:
        state = "ready" if report["ready"] else "NOT READY"
        typer.echo(
            f"{state}: {report['active']} active, {report['unchecked']} unchecked, "
            f"{report['quarantined']} quarantined, "
            f"{report['records']} found, {report['import_failures']} import failure(s), "
            f"average reliability {report['avg_reliability']:.3f}"
        )
        for suggestion in report["suggestions"]:
            typer.echo(f"  - {suggestion}")
    if not report["ready"]:
        raise typer.Exit(1)


@app.command("diagnostics")
@guarded
def diagnostics(
    as_json: JsonOption = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON diagnostics here.")
    ] = None,
) -> None:
    """Everything the factory knows: records, problems, shadowed names, profiles."""
    factory = open_factory()
    if output is not None:
        path = factory.export_diagnostics(output)
        typer.echo(f"wrote {path}")
        return
    if as_json:
        emit_json(factory.diagnostics_json())
    else:
        typer.echo(factory.diagnostics_report())


@quarantine_app.command("list")
@guarded
def quarantine_list(as_json: JsonOption = False) -> None:
    """Planners whose sandboxed import failed, with the reason."""
    entries = open_factory().list_quarantined()
    if as_json:
        emit_json(entries)
        return
    if not entries:
        typer.echo("no planner is quarantined")
        return
    for entry in entries:
        state = "" if entry["current"] else " (source changed: will be checked again)"
        typer.echo(f"{entry['planner_name']} ({entry['module']}): {entry['reason']}{state}")


@quarantine_app.command("release")
@guarded
def quarantine_release(name: str) -> None:
    """Release NAME so it is checked again in the sandbox on next use."""
    if not open_factory().release_quarantine(name):
        fail(f"{name!r} is not quarantined; see `planforge quarantine list`")
    typer.echo(f"released {name}")
