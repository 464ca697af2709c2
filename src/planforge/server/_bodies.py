"""JSON request bodies read through `planforge.documents`: bounded nesting, finite numbers.

FastAPI parses a JSON body with `json.loads`, which recurses once per level (a body 3,000
arrays deep crashed the request with `RecursionError`) and takes `NaN` and `Infinity` as
numbers. Every route is a `CheckedJSONRoute`: its request's JSON is read by
`documents.load_json` before FastAPI sees it, so such a body is a 400 (too deep) or a 422
(naming the non-finite field) before any handler runs. A syntax error is left to FastAPI's
own 422.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from planforge.documents import load_json

__all__ = ["CheckedJSONRoute"]

_SOURCE = "request body"
#: Bodies up to this size are read on the event loop (a sample portfolio, 17 KB: 0.35 ms).
_INLINE_BYTES = 64 * 1024


class _CheckedJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_checked_json"):
            body = await self.body()
            if len(body) <= _INLINE_BYTES:
                self._checked_json = load_json(body, source=_SOURCE)
            else:  # tens of milliseconds near the size limit: not on the event loop
                self._checked_json = await run_in_threadpool(load_json, body, source=_SOURCE)
        return self._checked_json


def _declares_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class CheckedJSONRoute(APIRoute):
    """An `APIRoute` whose JSON body passes the document checks first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            guarded = _CheckedJSONRequest(request.scope, request.receive)
            if _declares_json(guarded):
                # a syntax error is FastAPI's to report; a DocumentError leaves as ours
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                    await guarded.json()
            return await handle(guarded)

        return checked
