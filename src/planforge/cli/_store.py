"""Helpers of the configuration store commands (config, bucket, preset, db): opening the
store, resolving a version reference and printing stored records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from planforge.cli._common import fail, rich_console

if TYPE_CHECKING:
    from planforge.configstore import ConfigStore, ConfigVersion

__all__ = [
    "ActorOption",
    "actor_name",
    "open_store",
    "print_version",
    "read_document",
    "record_dict",
    "resolve_version",
    "short_when",
    "when_text",
]


ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who the change is recorded as (default: your OS user name)."),
]


def actor_name(value: str | None) -> str:
    from planforge.configstore import default_actor

    return value if value else default_actor()


def open_store() -> ConfigStore:
    """The store named by PLANFORGE_DATABASE_URL, else the SQLite file under PLANFORGE_HOME."""
    from planforge.configstore import ConfigStore

    return ConfigStore.from_environment()


def read_document(path: Path, what: str = "configuration") -> str:
    if not path.exists():
        fail(f"{what} file {path} not found; give the path of a TOML file")
    if not path.is_file():
        fail(f"{what} {path} is not a file; give the path of a TOML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8")


_NAME_VERSION = re.compile(r"^(?P<name>[^:]+):v?(?P<version>\d+)$")


def resolve_version(store: ConfigStore, reference: str) -> ConfigVersion:
    """A stored version: an id (12), NAME:VERSION (core:3) or a NAME (its active version)."""
    text = reference.strip()
    if text.isdigit():
        return store.get_config_by_id(int(text))
    match = _NAME_VERSION.match(text)
    if match:
        return store.get_version(match["name"], int(match["version"]))
    return store.get_active(text)


def when_text(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def short_when(value: Any) -> str:
    """Minutes are enough in a table; `--json` and `show` have the full timestamp."""
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def record_dict(record: Any) -> dict[str, Any]:
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


def print_version(version: ConfigVersion, *, with_toml: bool = True) -> None:
    from rich.table import Table

    console = rich_console()
    table = Table(title=f"{version.name} v{version.version} (#{version.id})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        ("title", version.title),
        ("description", version.description or ""),
        (f"active version of {version.name}", "yes" if version.active else "no"),
        ("created", when_text(version.created_at)),
        ("created by", version.created_by),
        ("parent", "" if version.parent_id is None else f"#{version.parent_id}"),
        ("digest", version.digest),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if with_toml:
        typer.echo(version.toml, nl=not version.toml.endswith("\n"))
