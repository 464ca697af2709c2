"""`planforge preset ...`: list, share and rate configuration presets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from planforge.cli._apps import preset_app
from planforge.cli._common import JsonOption, emit_json, guarded, rich_console
from planforge.cli._store import actor_name, open_store, read_document, record_dict

if TYPE_CHECKING:
    from planforge.configstore import Preset

__all__ = ["preset_create", "preset_list", "preset_rate", "preset_show"]


def _preset_row(preset: Preset) -> dict[str, Any]:
    return {key: value for key, value in record_dict(preset).items() if key != "toml"}


def _preset_reference(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


@preset_app.command("list")
@guarded
def preset_list(
    tag: Annotated[str | None, typer.Option("--tag", help="Only presets with this tag.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Shared presets, with downloads and ratings."""
    with open_store() as store:
        presets = store.list_presets(tag=tag)
    if as_json:
        emit_json([_preset_row(item) for item in presets])
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
    rich_console().print(table)


@preset_app.command("show")
@guarded
def preset_show(
    reference: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    as_json: JsonOption = False,
) -> None:
    """One preset with its TOML (counts as a download)."""
    with open_store() as store:
        preset = store.get_preset(_preset_reference(reference))
    if as_json:
        emit_json(record_dict(preset))
        return
    rating = "no ratings" if preset.rating is None else f"{preset.rating:.1f}/5"
    typer.echo(
        f"# preset {preset.name} (id {preset.id}) by {preset.author}; tags: "
        f"{', '.join(preset.tags) or 'none'}; {preset.downloads} downloads; {rating}"
    )
    typer.echo(f"# {preset.description}")
    typer.echo(preset.toml, nl=not preset.toml.endswith("\n"))


@preset_app.command("create")
@guarded
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
    text = read_document(file)
    with open_store() as store:
        preset = store.create_preset(name, description, text, actor_name(author), tuple(tag or ()))
    if as_json:
        emit_json(_preset_row(preset))
        return
    typer.echo(f"created preset {preset.name} (id {preset.id})")


@preset_app.command("rate")
@guarded
def preset_rate(
    reference: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    rating: Annotated[int, typer.Argument(help="1 (poor) to 5 (excellent).")],
    as_json: JsonOption = False,
) -> None:
    """Rate a preset from 1 to 5."""
    with open_store() as store:
        preset = store.rate_preset(_preset_reference(reference), rating)
    if as_json:
        emit_json(_preset_row(preset))
        return
    assert preset.rating is not None  # just rated
    typer.echo(f"{preset.name}: {preset.rating:.2f}/5 from {preset.ratings} rating(s)")
