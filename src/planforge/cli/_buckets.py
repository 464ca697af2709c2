"""`planforge bucket ...`: point buckets at configuration versions; see and roll back their
history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from planforge.cli._apps import bucket_app
from planforge.cli._common import JsonOption, emit_json, guarded, rich_console
from planforge.cli._store import (
    ActorOption,
    actor_name,
    open_store,
    print_version,
    record_dict,
    resolve_version,
    short_when,
    when_text,
)

if TYPE_CHECKING:
    from planforge.configstore import BucketAssignment

__all__ = [
    "bucket_assign",
    "bucket_context",
    "bucket_history",
    "bucket_list",
    "bucket_rollback",
    "bucket_show",
]


def _assignment_table(title: str, assignments: list[BucketAssignment]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("#", "assigned (UTC)", "by", "config", "id"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", min_width=16)
    for assignment in assignments:
        table.add_row(
            str(assignment.id),
            short_when(assignment.assigned_at),
            assignment.assigned_by,
            f"{assignment.config_name} v{assignment.config_version}",
            str(assignment.config_id),
            assignment.reason or "",
        )
    return table


def _assigned(assignment: BucketAssignment, as_json: bool) -> None:
    if as_json:
        emit_json(record_dict(assignment))
        return
    typer.echo(
        f"bucket {assignment.bucket} now runs {assignment.config_name} "
        f"v{assignment.config_version} (id {assignment.config_id})"
    )


@bucket_app.command("assign")
@guarded
def bucket_assign(
    bucket: str,
    reference: Annotated[
        str, typer.Argument(metavar="ID", help="An id, NAME:VERSION, or NAME (its active one).")
    ],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in history).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make BUCKET run a stored configuration version."""
    with open_store() as store:
        version = resolve_version(store, reference)
        assignment = store.assign_config_to_bucket(
            bucket, version.id, assigned_by=actor_name(actor), reason=reason
        )
    _assigned(assignment, as_json)


@bucket_app.command("list")
@guarded
def bucket_list(as_json: JsonOption = False) -> None:
    """Every bucket that has a configuration, with what it runs."""
    with open_store() as store:
        rows = [(bucket, store.get_bucket_config(bucket)) for bucket in store.list_buckets()]
    if as_json:
        emit_json([{"bucket": bucket, "config": record_dict(config)} for bucket, config in rows])
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} bucket(s)")
    for column in ("bucket", "config", "id", "digest"):
        table.add_column(column, no_wrap=True)
    for bucket, config in rows:
        table.add_row(
            bucket, f"{config.name} v{config.version}", str(config.id), config.digest[:12]
        )
    rich_console().print(table)


@bucket_app.command("show")
@guarded
def bucket_show(
    bucket: str,
    toml: Annotated[bool, typer.Option("--toml", help="Also print the TOML.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The configuration BUCKET runs now, and who assigned it when."""
    with open_store() as store:
        config = store.get_bucket_config(bucket)
        history = store.bucket_history(bucket)
    current = history[-1] if history else None
    if as_json:
        emit_json(
            {
                "bucket": bucket,
                "config": record_dict(config),
                "assignment": record_dict(current) if current is not None else None,
            }
        )
        return
    if current is not None:
        typer.echo(
            f"bucket {bucket}: {config.name} v{config.version} (id {config.id}), assigned "
            f"{when_text(current.assigned_at)} by {current.assigned_by}"
            + (f": {current.reason}" if current.reason else "")
        )
    print_version(config, with_toml=toml)


@bucket_app.command("history")
@guarded
def bucket_history(bucket: str, as_json: JsonOption = False) -> None:
    """Every assignment of BUCKET, oldest first (rollbacks included)."""
    with open_store() as store:
        history = store.bucket_history(bucket)
    if not history:
        from planforge.configstore.errors import BucketNotFound

        raise BucketNotFound(bucket)
    if as_json:
        emit_json([record_dict(item) for item in history])
        return
    rich_console().print(
        _assignment_table(f"bucket {bucket}: {len(history)} assignment(s)", history)
    )


@bucket_app.command("rollback")
@guarded
def bucket_rollback(
    bucket: str,
    name: Annotated[str, typer.Argument(help="The configuration's name.")],
    version: Annotated[int, typer.Argument(help="The version to go back to.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in history).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point BUCKET back at NAME's VERSION; recorded as a new assignment, nothing is erased."""
    with open_store() as store:
        assignment = store.rollback_to_version(
            bucket, name, version, assigned_by=actor_name(actor), reason=reason
        )
    _assigned(assignment, as_json)


@bucket_app.command("context")
@guarded
def bucket_context(
    bucket: str,
    set_from: Annotated[
        Path | None,
        typer.Option("--set", help="Store this JSON or TOML file as the bucket's context."),
    ] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show, or store with --set, the context a batch plans BUCKET with
    (`planforge batch --buckets BUCKET`)."""
    from planforge.cli._common import fail, read_context

    with open_store() as store:
        if set_from is not None:
            context = read_context(set_from)
            digest = store.set_bucket_context(bucket, context, actor_name(actor))
            if as_json:
                emit_json({"bucket": bucket, "context_digest": digest})
            else:
                typer.echo(f"bucket {bucket} context set from {set_from} (sha256 {digest[:12]})")
            return
        stored = store.get_bucket_context(bucket)
    if stored is None:
        fail(f"bucket {bucket} has no stored context; store one with --set FILE")
    emit_json(stored)
