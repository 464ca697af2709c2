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

from planforge.documents import load_json

__all__ = ["CheckedJSONRoute"]

_SOURCE = "request body"


class _CheckedJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_checked_json"):
            self._checked_json = load_json(await self.body(), source=_SOURCE)
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
