"""`planforge modules ...`: list, describe and document holistic planner modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planforge.cli._apps import modules_app
from planforge.cli._common import JsonOption, emit_json, fail, guarded, rich_console

__all__ = ["modules_describe", "modules_docs", "modules_list"]


def _check_kind(kind: str) -> None:
    from planforge.holistic.modules import KINDS

    if kind not in KINDS:
        fail(f"{kind!r} is not a module kind; kinds are {', '.join(KINDS)}")


@modules_app.command("list")
@guarded
def modules_list(
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (e.g. filters).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the registered modules (metadata only: nothing is imported)."""
    from planforge.holistic import default_registry

    if kind is not None:
        _check_kind(kind)
    registry = default_registry()
    modules = registry.list(kind)
    if as_json:
        emit_json([{"key": f"{m.kind}.{m.name}", **m.to_dict()} for m in modules])
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
    console = rich_console()
    console.print(table)
    for problem in registry.problems():
        console.print(
            f"problem: {problem.target} ({problem.origin}): {problem.reason}", markup=False
        )


@modules_app.command("describe")
@guarded
def modules_describe(
    kind: Annotated[str, typer.Argument(help="The module kind, e.g. opportunity_calculators.")],
    name: Annotated[str, typer.Argument(help="The module name, e.g. profit_taking.")],
    as_json: JsonOption = False,
) -> None:
    """Metadata, docstring, default parameters and the parameters' schema of one module."""
    from planforge.holistic import default_registry, param_docs

    _check_kind(kind)
    registry = default_registry()
    info = registry.describe(kind, name)
    rows = [] if "load_error" in info else param_docs(registry.load(kind, name).Params)
    if as_json:
        emit_json({**info, "params": [row.to_dict() for row in rows]})
        return
    from rich.table import Table

    console = rich_console()
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
@guarded
def modules_docs(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the Markdown to this file.")
    ] = None,
) -> None:
    """Markdown documentation of every module, from its metadata, docstring and params."""
    from planforge.holistic import default_registry, module_docs

    text = module_docs(default_registry())
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")
