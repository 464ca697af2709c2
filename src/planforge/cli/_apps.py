"""The Typer app and its sub-apps, wired together; command modules register on these."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = [
    "app",
    "bucket_app",
    "config_app",
    "db_app",
    "main_callback",
    "modules_app",
    "planners_app",
    "preset_app",
    "quarantine_app",
    "runs_app",
    "user_app",
]

app = typer.Typer(
    name="planforge",
    help="Planner factory: discover planners without running them, select one and explain why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
planners_app = typer.Typer(
    help="List, describe and check (in the sandbox) discovered planners.", no_args_is_help=True
)
quarantine_app = typer.Typer(help="See and release quarantined planners.", no_args_is_help=True)
config_app = typer.Typer(
    help="Holistic planner configurations: check them (schema, validate, dry-run) and keep "
    "them as versions (create, history, show, diff, export, import, clone).",
    no_args_is_help=True,
)
bucket_app = typer.Typer(
    help="Point buckets at configuration versions; see and roll back their history; keep the "
    "context a batch plans each bucket with.",
    no_args_is_help=True,
)
preset_app = typer.Typer(help="List, share and rate configuration presets.", no_args_is_help=True)
user_app = typer.Typer(help="API users of the service and their tokens.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Plan runs recorded by the service: list, show and cancel them.", no_args_is_help=True
)
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
app.add_typer(user_app, name="user")
app.add_typer(runs_app, name="runs")


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
