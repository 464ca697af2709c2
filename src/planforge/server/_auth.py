"""API-token authentication and role checks, as FastAPI dependencies.

A request names its user with `Authorization: Bearer <token>`; the store keeps only the
token's sha256, and each process caches recent lookups (`server.tokens`, emptied within a
second of any revocation). Roles are ordered (viewer < operator < admin), so a route states
the least role it needs: `user: Annotated[User, Depends(operator)]` (or the `Operator` alias).

A browser cannot set headers on a WebSocket, so the handshake of `/ws/events` may carry the
token as a subprotocol instead: the client offers `planforge.v1` and `planforge.token.<token>`
(tokens are URL-safe base64, legal in a subprotocol name), and the server accepts with
`planforge.v1` alone, so the token is never echoed back. `?token=` still works but is
discouraged: query strings end up in access logs.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from planforge.configstore import ROLES, User
from planforge.server._state import ServiceState
from planforge.server._tokens import TokenCache
from planforge.server.errors import AuthenticationError, PermissionDenied

__all__ = [
    "ROLES",
    "WS_PROTOCOL",
    "WS_TOKEN_PROTOCOL_PREFIX",
    "Admin",
    "Operator",
    "User",
    "Viewer",
    "admin",
    "bearer_token",
    "operator",
    "service",
    "viewer",
    "websocket_subprotocol",
    "websocket_token",
]

_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}
_MAX_TOKEN_CHARS: Final = 512
#: The WebSocket subprotocol of the event stream; the server accepts with this one only.
WS_PROTOCOL: Final = "planforge.v1"
#: Offered alongside `WS_PROTOCOL`, a subprotocol that carries the API token.
WS_TOKEN_PROTOCOL_PREFIX: Final = "planforge.token."


def service(request: Request) -> ServiceState:
    """The app's shared state (built by the lifespan)."""
    state: ServiceState = request.app.state.service
    return state


def _checked(token: str | None) -> str | None:
    """A non-empty token of a sane length, else None (a huge one is not even hashed)."""
    return token if token and len(token) <= _MAX_TOKEN_CHARS else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return _checked(token.strip()) if scheme.lower() == "bearer" else None


def _authenticate(tokens: TokenCache, token: str | None) -> User:
    if token is None:
        raise AuthenticationError(
            "This endpoint needs an API token: send 'Authorization: Bearer <token>' "
            "(create one with `planforge user create NAME --role viewer`)."
        )
    user = tokens.user_for(token)
    if user is None:
        raise AuthenticationError(
            "The API token is not valid (unknown, revoked or replaced by a rotation); check "
            "it, or ask an administrator for a new one (`planforge user rotate NAME`)."
        )
    return user


def _require(request: Request, needed: str) -> User:
    token = bearer_token(request.headers.get("authorization"))
    user = _authenticate(service(request).tokens, token)
    if _RANK.get(user.role, -1) < _RANK[needed]:
        raise PermissionDenied(user, needed)
    return user


#: Declares the bearer token in the OpenAPI document (clients and schemathesis see which
#: routes need it); the token itself is read by `_require`, which also answers its absence.
_API_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="APIToken",
    description="An API token from `planforge user create NAME --role ROLE`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_API_TOKEN)]


# Plain (not async) functions: FastAPI runs them in its thread pool, so the database lookup
# never blocks the event loop.
def viewer(request: Request, _: Credentials) -> User:
    """Any authenticated user."""
    return _require(request, "viewer")


def operator(request: Request, _: Credentials) -> User:
    """Operators and admins: may run plans."""
    return _require(request, "operator")


def admin(request: Request, _: Credentials) -> User:
    """Admins only: may change configurations, buckets and presets."""
    return _require(request, "admin")


Viewer = Annotated[User, Depends(viewer)]
Operator = Annotated[User, Depends(operator)]
Admin = Annotated[User, Depends(admin)]


def websocket_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to accept the handshake with: `WS_PROTOCOL` if offered, never a token."""
    offered = websocket.scope.get("subprotocols") or ()
    return WS_PROTOCOL if WS_PROTOCOL in offered else None


def websocket_token(websocket: WebSocket) -> str | None:
    """The token of a handshake: the Bearer header, else a `planforge.token.<token>`
    subprotocol offered with `planforge.v1`, else `?token=` (discouraged)."""
    token = bearer_token(websocket.headers.get("authorization"))
    if token is not None:
        return token
    offered = websocket.scope.get("subprotocols") or ()
    if WS_PROTOCOL in offered:
        for protocol in offered:
            if protocol.startswith(WS_TOKEN_PROTOCOL_PREFIX):
                return _checked(protocol.removeprefix(WS_TOKEN_PROTOCOL_PREFIX))
    return _checked(websocket.query_params.get("token"))
