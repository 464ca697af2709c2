"""The HTTP and WebSocket service (extra `server`): FastAPI over the factory, the store and
the runtime.

`create_app` is imported on first use, so the service's parts (tokens, bodies, responses) can
be imported without building FastAPI's application machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planforge.server._app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from planforge.server._app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
