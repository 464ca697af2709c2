"""Request ids and one JSON log line per request.

The id comes from the caller's `X-Request-ID` header when it is a plain token, otherwise it is
made here; it is echoed in the response, kept on `request.state.request_id` (the plans route
puts it into the run's execution context), and logged with the method, route, status and
duration.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from planforge.logs import get_logger

__all__ = ["RequestLogMiddleware", "request_id_of"]

_log = get_logger("server.requests")
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_HEADER = b"x-request-id"


def request_id_of(scope: Scope) -> str:
    """The caller's request id when it is a safe token, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            text = str(value.decode("latin-1"))
            if _ACCEPTABLE.match(text):
                return text
            break
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Pure ASGI, so WebSocket upgrades and streaming bodies pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            _log.info(
                "request",
                request_id=request_id,
                kind=scope["type"],
                method=scope.get("method", "WS"),
                route=getattr(route, "path", scope.get("path", "")),
                status=status["code"],
                duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            )
