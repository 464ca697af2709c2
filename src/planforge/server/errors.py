"""Errors of the HTTP service; `server.responses` maps each to its status by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge.errors import PlannerError

if TYPE_CHECKING:
    from planforge.configstore import User

__all__ = ["AuthenticationError", "PermissionDenied"]


class AuthenticationError(PlannerError):
    """No token, or one no user holds (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, where="auth")


class PermissionDenied(PlannerError):
    """The user's role is below what the route needs (HTTP 403)."""

    def __init__(self, user: User, needed: str) -> None:
        super().__init__(
            f"User {user.name!r} has role {user.role!r}; this needs {needed!r} or higher. "
            f"Ask an administrator for a {needed} token.",
            where="auth",
            context={"user": user.name, "role": user.role, "needed": needed},
        )
