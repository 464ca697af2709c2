"""API-token authentication and role checks, as FastAPI dependencies.

A request names its user with `Authorization: Bearer <token>`; the store keeps only the
token's sha256. Roles are ordered (viewer < operator < admin), so a route states the least
role it needs: `user: Annotated[User, Depends(operator)]` (or the `Operator` alias).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request, WebSocket

from planforge.configstore.records import User
from planforge.configstore.store import ROLES, ConfigStore
from planforge.errors import PlannerError
from planforge.server.state import ServiceState

__all__ = [
    "ROLES",
    "Admin",
    "AuthenticationError",
    "Operator",
    "PermissionDenied",
    "User",
    "Viewer",
    "admin",
    "bearer_token",
    "operator",
    "service",
    "user_for_websocket",
    "viewer",
]

_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}
_MAX_TOKEN_CHARS: Final = 512


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


def service(request: Request) -> ServiceState:
    """The app's shared state (built by the lifespan)."""
    state: ServiceState = request.app.state.service
    return state


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    return token


def _authenticate(store: ConfigStore, token: str | None) -> User:
    if token is None:
        raise AuthenticationError(
            "This endpoint needs an API token: send 'Authorization: Bearer <token>' "
            "(create one with `planforge user create NAME --role viewer`)."
        )
    user = store.user_for_token(token)
    if user is None:
        raise AuthenticationError(
            "The API token is not valid; check it, or create a new one with "
            "`planforge user create`."
        )
    return user


def _require(request: Request, needed: str) -> User:
    user = _authenticate(service(request).store, bearer_token(request.headers.get("authorization")))
    if _RANK.get(user.role, -1) < _RANK[needed]:
        raise PermissionDenied(user, needed)
    return user


# Plain (not async) functions: FastAPI runs them in its thread pool, so the database lookup
# never blocks the event loop.
def viewer(request: Request) -> User:
    """Any authenticated user."""
    return _require(request, "viewer")


def operator(request: Request) -> User:
    """Operators and admins: may run plans."""
    return _require(request, "operator")


def admin(request: Request) -> User:
    """Admins only: may change configurations, buckets and presets."""
    return _require(request, "admin")


Viewer = Annotated[User, Depends(viewer)]
Operator = Annotated[User, Depends(operator)]
Admin = Annotated[User, Depends(admin)]


def user_for_websocket(websocket: WebSocket, store: ConfigStore) -> User | None:
    """The user of a WebSocket handshake (Bearer header, else `?token=`); None when unknown.

    Blocking (a database lookup): call it through `run_in_threadpool` from async code.
    """
    token = bearer_token(websocket.headers.get("authorization"))
    if token is None:
        query_token = websocket.query_params.get("token")
        token = query_token if query_token and len(query_token) <= _MAX_TOKEN_CHARS else None
    if token is None:
        return None
    return store.user_for_token(token)
