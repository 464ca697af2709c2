"""Routes: the web console's files, and `GET /me`, which the console asks first.

The console is a page, a style sheet and a few ES modules shipped in the package (no build
step, nothing fetched from elsewhere), served with a content security policy that allows only
this origin: the page talks to the public API and nothing else.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import Response

from planforge.server._auth import Viewer
from planforge.server._responses import GUARDED, errors

__all__ = ["router"]

router = APIRouter(tags=["console"])

_SCRIPT = "text/javascript; charset=utf-8"
_ASSETS: Final = {
    "icon.svg": "image/svg+xml",
    "console.css": "text/css; charset=utf-8",
    # the page's script and the ES modules it imports, one per part of the console
    **dict.fromkeys(
        ("console.js", "core.js", "runs.js", "configs.js", "buckets.js", "presets.js"), _SCRIPT
    ),
}
_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS: Final = {
    "Content-Security-Policy": _POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    return files("planforge.server").joinpath("console", name).read_bytes()


@router.get("/console", include_in_schema=False)
def console_page() -> Response:
    """The console's page; it signs in with an API token and then uses the public API."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/console/{name}", include_in_schema=False)
def console_asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        return Response(status_code=404, content=b"not found", media_type="text/plain")
    return Response(_asset(name), media_type=media_type, headers=_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """The console's icon, also for pages that declare none (`/livez`, `/docs`): a browser
    asks every page of a site for one, and logs a 404 as an error when it is missing."""
    return Response(_asset("icon.svg"), media_type="image/svg+xml", headers=_HEADERS)


@router.get("/me", summary="Who the token belongs to: name and role.", responses=errors(*GUARDED))
def me(user: Viewer) -> dict[str, Any]:
    return {"name": user.name, "role": user.role}
