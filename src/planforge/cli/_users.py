"""`planforge user ...`: API users of the service and their tokens.

A token is printed once (by `create` and `rotate`) and only its hash is stored. `revoke` keeps
the user, marked revoked, for the audit trail; `rotate` gives any user, revoked or not, a new
token and makes the old one useless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from planforge.cli._apps import user_app
from planforge.cli._common import JsonOption, emit_json, guarded, rich_console
from planforge.cli._store import (
    ActorOption,
    actor_name,
    open_store,
    record_dict,
    short_when,
    when_text,
)

if TYPE_CHECKING:
    from planforge.configstore import User

__all__ = ["NameArgument", "user_create", "user_list", "user_revoke", "user_rotate"]

NameArgument = Annotated[str, typer.Argument(help="The user's name.")]


def _user_json(user: User) -> dict[str, Any]:
    return {**record_dict(user), "status": user.status}


def _print_token(user: User, token: str, as_json: bool, done: str) -> None:
    """The token alone on stdout (for scripts), what happened on stderr."""
    if as_json:
        emit_json({**_user_json(user), "token": token})
        return
    typer.echo(token)
    typer.echo(
        f"{done} {user.role} {user.name!r}. Keep the token above now: it is not stored and "
        "cannot be shown again.",
        err=True,
    )


@user_app.command("create")
@guarded
def user_create(
    name: Annotated[
        str,
        typer.Argument(
            help="The user's name (unique): 1-128 letters, digits or _ . : @ - (it becomes "
            "the user id of its runs)."
        ),
    ],
    role: Annotated[
        str, typer.Option("--role", help="viewer (read), operator (run plans) or admin.")
    ] = "viewer",
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API user and print its token: shown this once, only its hash is stored."""
    from planforge.configstore import check_new_user

    check_new_user(name, role)  # before the database is opened: a bad name changes nothing
    with open_store() as store:
        user, token = store.create_user(name, role, created_by=actor_name(actor))
    _print_token(user, token, as_json, "Created")


@user_app.command("rotate")
@guarded
def user_rotate(name: NameArgument, actor: ActorOption = None, as_json: JsonOption = False) -> None:
    """Give a user a new token (printed once); the old one stops working at once.

    A revoked user is re-enabled with the new token.
    """
    with open_store() as store:
        user, token = store.rotate_user(name, actor=actor_name(actor))
    _print_token(user, token, as_json, "New token for")


@user_app.command("revoke")
@guarded
def user_revoke(name: NameArgument, actor: ActorOption = None, as_json: JsonOption = False) -> None:
    """Stop a user's token from working, on every server within a second.

    The user stays listed as revoked; `planforge user rotate NAME` re-enables it.
    """
    with open_store() as store:
        user = store.revoke_user(name, actor=actor_name(actor))
    if as_json:
        emit_json(_user_json(user))
        return
    typer.echo(
        f"{user.name!r} is revoked (since {when_text(user.revoked_at)}): its token is refused. "
        f"`planforge user rotate {user.name}` gives it a new one."
    )


@user_app.command("list")
@guarded
def user_list(as_json: JsonOption = False) -> None:
    """API users, their roles, status and last use (never their tokens)."""
    with open_store() as store:
        users = store.list_users()
    if as_json:
        emit_json([_user_json(user) for user in users])
        return
    from rich.table import Table

    table = Table(title=f"{len(users)} user(s)", caption="last used: to within a minute")
    for column in ("id", "name", "role", "status", "created", "last used"):
        table.add_column(column, no_wrap=True)
    for user in users:
        revoked = short_when(user.revoked_at)
        status = f"revoked {revoked}" if revoked else "active"
        created, last_used = short_when(user.created_at), short_when(user.last_used_at)
        table.add_row(str(user.id), user.name, user.role, status, created, last_used or "never")
    rich_console().print(table)
