"""`planforge user ...`: API users of the service and their tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from planforge.cli._apps import user_app
from planforge.cli._common import JsonOption, _console, _emit_json, _guard
from planforge.cli._store import _record, _store


@user_app.command("create")
@_guard
def user_create(
    name: Annotated[str, typer.Argument(help="The user's name (unique).")],
    role: Annotated[
        str, typer.Option("--role", help="viewer (read), operator (run plans) or admin.")
    ] = "viewer",
    as_json: JsonOption = False,
) -> None:
    """Create an API user and print its token: shown this once, only its hash is stored."""
    with _store() as store:
        user, token = store.create_user(name, role)
    if as_json:
        _emit_json({**_record(user), "token": token})
        return
    typer.echo(token)
    typer.echo(
        f"Created {user.role} {user.name!r}. Keep the token above now: it is not stored and "
        "cannot be shown again.",
        err=True,
    )


@user_app.command("list")
@_guard
def user_list(as_json: JsonOption = False) -> None:
    """API users and their roles (never their tokens)."""
    with _store() as store:
        users = store.list_users()
    if as_json:
        _emit_json([_record(user) for user in users])
        return
    from rich.table import Table

    table = Table(title=f"{len(users)} user(s)")
    for column in ("id", "name", "role", "created"):
        table.add_column(column, no_wrap=True)
    for user in users:
        table.add_row(str(user.id), user.name, user.role, user.created_at.isoformat())
    _console().print(table)
