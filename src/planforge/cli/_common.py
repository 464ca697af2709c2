"""Helpers every command group shares: failing with one line, JSON output, reading inputs.

Heavy modules (pydantic, the factory) are imported inside the helpers that need them, so
`planforge --help` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from planforge.factory import PlannerFactory

__all__ = [
    "JsonOption",
    "config_reference",
    "emit_json",
    "fail",
    "guarded",
    "number_text",
    "open_factory",
    "quantity_text",
    "read_context",
    "rich_console",
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def fail(message: str, code: int = 1) -> NoReturn:
    from planforge.redact import redact_text

    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    first_line = redact_text(first_line)
    typer.echo(f"error: {first_line}", err=True)
    raise typer.Exit(code)


def open_factory() -> PlannerFactory:
    from planforge.errors import SettingsError
    from planforge.factory import PlannerFactory
    from planforge.logs import configure_logging
    from planforge.settings import load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(exc.message)
    configure_logging(os.environ.get("FACTORY_LOG_LEVEL", "WARNING"))
    return PlannerFactory(settings)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def rich_console() -> Any:
    from rich.console import Console

    return Console()


def guarded(command: Any) -> Any:
    """Turn planforge errors into one line on stderr and exit code 1."""
    import functools

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from planforge.errors import PlannerError

        try:
            return command(*args, **kwargs)
        except PlannerError as exc:
            fail(exc.message)
        except (OSError, ValueError) as exc:
            fail(f"{type(exc).__name__}: {exc}")

    return wrapper


def read_context(path: Path) -> dict[str, Any]:
    if not path.exists():
        fail(f"context file {path} not found; give a JSON or TOML file with --context")
    if not path.is_file():
        fail(f"context {path} is not a file; give a JSON or TOML file with --context")
    import tomllib

    from planforge.documents import load_json, load_toml
    from planforge.errors import DocumentError

    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = load_toml(text, source=str(path))
        else:
            data = load_json(text, source=str(path))
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path} is not valid TOML: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}")
    except DocumentError as exc:
        fail(exc.message)
    if not isinstance(data, dict):
        fail(f"{path} must hold a JSON object or TOML table at the top level")
    return data


def config_reference(value: str) -> str | Path:
    """A preset name as it is, otherwise an existing file; anything else fails naming it."""
    from planforge.portfolio.planner import PRESETS

    if value in PRESETS:
        return value
    path = Path(value)
    if path.is_file():
        return path
    presets = ", ".join(PRESETS)
    if path.exists():
        fail(f"configuration {value} is not a file; give a TOML file or a preset ({presets})")
    fail(f"configuration file {value} not found; give a TOML file or a preset ({presets})")


def number_text(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def quantity_text(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer():
            return f"{value:,.0f}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)
