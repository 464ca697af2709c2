"""The inputs of a batch, streamed one at a time: a directory of context files, a JSON Lines
file, generated portfolios, or contexts given in Python.

An input that cannot be read (a file that is not JSON, a line without a context) is still an
input: it carries its problem and becomes that input's error in the output, so one bad
portfolio never stops the others. Nothing here holds more than one input at a time, except
the sorted names of a directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from planforge.documents import canonical_json, load_json, load_toml
from planforge.errors import DocumentError

if TYPE_CHECKING:
    from planforge.configstore import ConfigStore

__all__ = [
    "CONTEXT_SUFFIXES",
    "BatchInput",
    "as_toml_text",
    "bucket_inputs",
    "config_digest",
    "context_digest",
    "generated_inputs",
    "inputs_from",
    "read_inputs",
]

CONTEXT_SUFFIXES: Final = (".json", ".toml")
_NO_CONFIG_DIGEST: Final = "planner-default"


class BatchInput(NamedTuple):
    """One portfolio to plan. `config`, `objective` and `planner`, when set, override the
    batch's own for this input; `problem` says why it cannot be planned."""

    position: int
    id: str
    context: dict[str, Any] | None
    config: str | None = None
    objective: str | None = None
    planner: str | None = None
    problem: str | None = None


def context_digest(context: Mapping[str, Any] | None) -> str:
    """The sha256 of the context's canonical JSON, the digest the runs table keeps."""
    if context is None:
        return ""
    return hashlib.sha256(canonical_json(context).encode("utf-8")).hexdigest()


def config_digest(config: str | None) -> str:
    """The sha256 of the configuration's text (a preset's name stands for its file's text)."""
    if config is None:
        return _NO_CONFIG_DIGEST
    text = config
    if "\n" not in config:
        from planforge.portfolio.planner import PRESETS, preset_text

        if config in PRESETS:
            text = preset_text(config)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_inputs(source: Path) -> Iterator[BatchInput]:
    """The inputs in `source`: a directory of `.json`/`.toml` context files (by file name,
    ids are the file stems) or a JSON Lines file (one input per line)."""
    if source.is_dir():
        return _directory(source)
    if source.is_file():
        return _json_lines(source)
    raise FileNotFoundError(
        f"batch input {source} not found; give a directory of context files (.json, .toml) "
        'or a JSON Lines file of {"id": ..., "context": {...}} lines'
    )


def _directory(folder: Path) -> Iterator[BatchInput]:
    names = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and Path(entry.name).suffix.lower() in CONTEXT_SUFFIXES
    )
    seen: set[str] = set()
    for index, name in enumerate(names):
        path = folder / name
        ident = path.stem
        if ident in seen:
            yield BatchInput(
                index, name, None, problem=f"{name}: another file has the id {ident!r}"
            )
            continue
        seen.add(ident)
        context, problem = _context_file(path)
        yield BatchInput(index, ident, context, problem=problem)


def _context_file(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            data: Any = load_toml(text, source=path.name)
        else:
            data = load_json(text, source=path.name)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name}: cannot be read ({type(exc).__name__}: {exc})"
    except tomllib.TOMLDecodeError as exc:
        return None, f"{path.name}: not valid TOML ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"{path.name}: not valid JSON ({exc})"
    except DocumentError as exc:
        return None, exc.message
    if not isinstance(data, dict):
        return None, f"{path.name}: must hold a JSON object or TOML table at the top level"
    return data, None


def _json_lines(path: Path) -> Iterator[BatchInput]:
    index = 0
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            yield _line_input(index, number, line)
            index += 1


_LINE_SHAPE: Final = (
    'each line is {"id": "...", "context": {...}} (optionally "config", "objective")'
)


def _line_input(index: int, number: int, line: str) -> BatchInput:
    fallback = f"line-{number}"
    try:
        data = load_json(line, source=f"line {number}")
    except json.JSONDecodeError as exc:
        return BatchInput(index, fallback, None, problem=f"line {number}: not valid JSON ({exc})")
    except DocumentError as exc:
        return BatchInput(index, fallback, None, problem=f"line {number}: {exc.message}")
    if not isinstance(data, dict):
        return BatchInput(index, fallback, None, problem=f"line {number}: {_LINE_SHAPE}")
    ident = data.get("id")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not str(ident).strip():
        return BatchInput(index, fallback, None, problem=f'line {number}: no "id"; {_LINE_SHAPE}')
    return _input_of(index, str(ident), data, f"line {number} ({ident})")


def _input_of(index: int, ident: str, data: Mapping[str, Any], where: str) -> BatchInput:
    """An input from an `{"id", "context", ...}` mapping, or its problem."""
    context = data.get("context")
    if not isinstance(context, dict):
        return BatchInput(index, ident, None, problem=f'{where}: "context" must be an object')
    extras: dict[str, str | None] = {}
    for key in ("config", "objective", "planner"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            return BatchInput(index, ident, None, problem=f"{where}: {key!r} must be a string")
        extras[key] = value
    return BatchInput(index, ident, context, **extras)


def generated_inputs(count: int, seed: int = 0) -> Iterator[BatchInput]:
    """`count` synthetic portfolios (`planforge.portfolio.synthetic`), made as they are used."""
    from planforge.portfolio.synthetic import generate_portfolios

    for index, (ident, context) in enumerate(generate_portfolios(count, seed)):
        yield BatchInput(index, ident, context)


def inputs_from(items: Iterable[Any]) -> Iterator[BatchInput]:
    """Inputs from Python: contexts (ids `1`, `2`, ...), `(id, context)` pairs, mappings with
    `id` and `context`, or `BatchInput`s (renumbered in the order given)."""
    for index, item in enumerate(items):
        if isinstance(item, BatchInput):
            yield item._replace(position=index)
        elif isinstance(item, tuple) and len(item) == 2:
            ident, context = item
            if isinstance(context, Mapping):
                yield BatchInput(index, str(ident), dict(context))
            else:
                yield BatchInput(index, str(ident), None, problem="the context must be a mapping")
        elif isinstance(item, Mapping) and "context" in item and "id" in item:
            yield _input_of(index, str(item["id"]), item, f"input {item['id']}")
        elif isinstance(item, Mapping):
            yield BatchInput(index, str(index + 1), dict(item))
        else:
            problem = f"input {index + 1} is a {type(item).__name__}, not a context mapping"
            yield BatchInput(index, str(index + 1), None, problem=problem)


def bucket_inputs(store: ConfigStore, names: list[str]) -> Iterator[BatchInput]:
    """One input per bucket: its stored context, planned with the configuration it runs now
    (ids are the bucket names). A bucket without either is an input with its problem."""
    from planforge.errors import PlannerError

    for index, name in enumerate(names):
        try:
            toml = store.get_bucket_config(name).toml
        except PlannerError as exc:
            yield BatchInput(index, name, None, problem=f"bucket {name}: {exc.message}")
            continue
        context = store.get_bucket_context(name)
        if context is None:
            fix = f"store one with `planforge bucket context {name} --set FILE`"
            yield BatchInput(index, name, None, problem=f"bucket {name} has no context; {fix}")
            continue
        yield BatchInput(index, name, context, config=as_toml_text(toml))


def as_toml_text(text: str) -> str:
    """Stored TOML as text a planner never mistakes for a preset name or a path."""
    return text if "\n" in text else text + "\n"
