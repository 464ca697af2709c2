"""`planforge config ...`: check holistic configurations (schema, validate, dry-run) and keep
them as versions in the configuration store (create, list, history, show, diff, export, import,
clone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from planforge.cli._apps import config_app
from planforge.cli._common import (
    JsonOption,
    config_reference,
    emit_json,
    fail,
    guarded,
    read_context,
    rich_console,
)
from planforge.cli._store import (
    _NAME_VERSION,
    ActorOption,
    actor_name,
    open_store,
    print_version,
    read_document,
    record_dict,
    resolve_version,
    short_when,
)

if TYPE_CHECKING:
    from planforge.configstore import ConfigStore, ConfigVersion, CreateResult
    from planforge.holistic import EngineResult, HolisticEngine

__all__ = [
    "config_clone",
    "config_create",
    "config_diff",
    "config_dry_run",
    "config_export",
    "config_history",
    "config_import",
    "config_list",
    "config_schema",
    "config_show",
    "config_validate",
]


def _config_failure(exc: Any, source: str, as_json: bool) -> NoReturn:
    """A configuration that does not parse: JSON on stdout with --json, one line on stderr."""
    if as_json:
        emit_json(
            {
                "valid": False,
                "source": getattr(exc, "source", source),
                "key": getattr(exc, "key", None),
                "line": getattr(exc, "line", None),
                "column": getattr(exc, "column", None),
                "error": exc.message,
            }
        )
    fail(exc.message)


@config_app.command("schema")
@guarded
def config_schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema to this file.")
    ] = None,
) -> None:
    """Print the JSON Schema of a holistic configuration (for TOML editors' completion).

    Point a TOML file at it with a top-level `"$schema" = "path/to/schema.json"` line.
    """
    from planforge.holistic import config_json_schema, default_registry
    from planforge.portfolio.domain import PortfolioSettings

    text = json.dumps(config_json_schema(default_registry(), PortfolioSettings), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


@config_app.command("validate")
@guarded
def config_validate(
    file: Annotated[str, typer.Argument(help="A TOML file or a preset name.")],
    as_json: JsonOption = False,
) -> None:
    """Parse and check a configuration; exit 1 with the offending key when it is not valid."""
    from planforge.holistic import config_digest
    from planforge.holistic.errors import ConfigError
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    reference = config_reference(file)
    try:
        config = HolisticPortfolioPlanner().load_config(reference)
    except ConfigError as exc:
        _config_failure(exc, str(reference), as_json)
    enabled = config.enabled_keys()
    digest = config_digest(config)
    if as_json:
        emit_json(
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
@guarded
def config_dry_run(
    file: Annotated[str, typer.Argument(help="A TOML file or a preset name.")],
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show what bounds each stage; with --context, plan that context once "
            "(recorded nowhere) and show why: each calculator's candidates, what every stage "
            "kept and dropped, and for an empty plan the closest plan a rule stopped.",
        ),
    ] = False,
    context: Annotated[
        Path | None,
        typer.Option("--context", help="A portfolio (JSON or TOML) to explain; needs --explain."),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="The objective of the explained plan.")
    ] = "Rebalance my portfolio",
    as_json: JsonOption = False,
) -> None:
    """Load everything a configuration enables and estimate the work; plan nothing unless
    --explain --context asks to explain one portfolio.

    Exit 1 when the configuration is not valid or a module it enables cannot be loaded.
    """
    from planforge.holistic.errors import ConfigError
    from planforge.portfolio.planner import HolisticPortfolioPlanner

    if context is not None and not explain:
        fail("--context is read only with --explain (a dry run plans nothing otherwise)")
    portfolio = read_context(context) if context is not None else None
    reference = config_reference(file)
    try:
        engine = HolisticPortfolioPlanner().engine(reference)
    except ConfigError as exc:
        _config_failure(exc, str(reference), as_json)
    report = engine.dry_run()
    explained = _explained(engine, objective, portfolio) if portfolio is not None else None
    if as_json:
        data = {"source": str(reference), **report.to_dict()}
        if explain:
            data["limits"] = engine.config.planner.model_dump(mode="json")
            data["explanation"] = _explanation_dict(explained)
        emit_json(data)
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
    if explain:
        _print_explained(engine, explained)
    if not report.valid:
        raise typer.Exit(1)


def _explained(engine: HolisticEngine, objective: str, portfolio: dict[str, Any]) -> EngineResult:
    """Plan `portfolio` once with `engine`, explained; the configuration of the dry run wins
    over one the file names."""
    from planforge.contract import RESERVED_CONTEXT_KEYS

    raw = {key: value for key, value in portfolio.items() if key not in RESERVED_CONTEXT_KEYS}
    return engine.run(objective, raw, explain=True)


def _explanation_dict(explained: EngineResult | None) -> dict[str, Any] | None:
    if explained is None or explained.explanation is None:
        return None
    return explained.explanation.to_dict()


def _print_explained(engine: HolisticEngine, explained: EngineResult | None) -> None:
    from planforge.cli._explain import print_explanation, print_limits

    if explained is None:
        print_limits(engine.config.planner.model_dump(mode="json"))
        return
    metrics = explained.plan.metrics
    typer.echo(
        f"explained plan: {len(explained.plan.steps)} steps, score "
        f"{metrics['current_score']:.6f} -> {metrics['end_state_score']:.6f}"
    )
    print_explanation(_explanation_dict(explained))


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
            short_when(item.created_at),
            item.created_by,
            item.digest[:10],
            item.title,
        )
    return table


def _created(result: CreateResult, as_json: bool) -> None:
    version = result.config
    if as_json:
        emit_json({"created": result.created, "config": record_dict(version)})
        return
    if result.created:
        typer.echo(f"created {version.name} v{version.version} (id {version.id})")
    else:
        typer.echo(
            f"unchanged: {version.name} v{version.version} (id {version.id}) already has this "
            "content; no new version was stored"
        )


@config_app.command("create")
@guarded
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
    text = read_document(file)
    with open_store() as store:
        result = store.create_new_version(
            name,
            title,
            text,
            description=description,
            created_by=actor_name(actor),
            expected_version=expected_version,
        )
    _created(result, as_json)


@config_app.command("list")
@guarded
def config_list(as_json: JsonOption = False) -> None:
    """The active version of every stored configuration, by name."""
    with open_store() as store:
        versions = store.list_configs()
    if as_json:
        emit_json([record_dict(item) for item in versions])
        return
    rich_console().print(_version_table(f"{len(versions)} configuration(s)", versions))


@config_app.command("history")
@guarded
def config_history(name: str, as_json: JsonOption = False) -> None:
    """Every version of NAME, oldest first."""
    with open_store() as store:
        versions = store.get_version_history(name)
    if not versions:
        from planforge.configstore.errors import ConfigNotFound

        raise ConfigNotFound(name=name)
    if as_json:
        emit_json([record_dict(item) for item in versions])
        return
    rich_console().print(
        _version_table(f"{name}: {len(versions)} version(s)", versions, names=False)
    )


@config_app.command("show")
@guarded
def config_show(
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    as_json: JsonOption = False,
) -> None:
    """One stored version: its metadata and TOML."""
    with open_store() as store:
        version = resolve_version(store, reference)
    if as_json:
        emit_json(record_dict(version))
        return
    print_version(version)


def _diff_side(store: ConfigStore, reference: str) -> tuple[str, str]:
    """(label, TOML) of a stored version, or of a file when REFERENCE is an existing path."""
    from planforge.configstore import config_label

    path = Path(reference)
    if not reference.strip().isdigit() and not _NAME_VERSION.match(reference) and path.is_file():
        return str(path), read_document(path)
    version = resolve_version(store, reference)
    return config_label(version), version.toml


@config_app.command("diff")
@guarded
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
    from planforge.configstore import semantic_diff, unified_diff

    with open_store() as store:
        (a_label, a_text), (b_label, b_text) = _diff_side(store, a), _diff_side(store, b)
    if semantic:
        diff = semantic_diff(a_text, b_text, a_label=a_label, b_label=b_label)
        if as_json:
            emit_json({"a": a_label, "b": b_label, **diff.to_dict()})
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
        emit_json({"a": a_label, "b": b_label, "identical": not text, "diff": text})
        return
    if not text:
        typer.echo(f"{a_label} and {b_label} are identical")
        return
    typer.echo(text, nl=False)


@config_app.command("export")
@guarded
def config_export(
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """A stored version as a TOML file with a metadata header (importable elsewhere)."""
    from planforge.configstore import export_config

    with open_store() as store:
        text = export_config(resolve_version(store, reference))
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text, encoding="utf-8", newline="")
    typer.echo(f"wrote {output}")


@config_app.command("import")
@guarded
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
    from planforge.configstore import import_config

    text = read_document(file)
    with open_store() as store:
        result = import_config(
            store,
            text,
            name=name,
            title=title,
            description=description,
            created_by=actor_name(actor),
        )
    _created(result, as_json)


@config_app.command("clone")
@guarded
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
    from planforge.configstore import clone_config

    with open_store() as store:
        source = resolve_version(store, reference)
        result = clone_config(
            store, source.id, name=name, title=title, created_by=actor_name(actor)
        )
    _created(result, as_json)
