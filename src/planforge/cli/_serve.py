"""`planforge serve`: the HTTP and WebSocket service under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from planforge.cli._apps import app
from planforge.cli._common import fail, guarded

__all__ = ["APP_FACTORY", "serve"]

#: The application factory uvicorn calls in the serving process.
APP_FACTORY = "planforge.server:create_app"


@app.command("serve")
@guarded
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the API (planners, plans, configurations, /ws/events) until interrupted.

    The factory, the configuration store and the event bus are built from the environment
    (FACTORY_*, PLANFORGE_DATABASE_URL, PLANFORGE_REDIS_URL) when the server starts.
    """
    try:
        import uvicorn
    except ImportError:
        fail("planforge serve needs the server extra: pip install 'planforge[server]'")
    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        fail(f"--log-level {log_level!r} is not one of {', '.join(levels)}")
    from planforge.logs import configure_logging

    # planforge's JSON lines (requests with their ids, runs) and uvicorn's own (its access
    # log among them) go to stderr through one handler that redacts credentials; uvicorn is
    # told to leave logging alone (log_config=None) so its plain-text handlers never appear.
    configure_logging(
        "DEBUG" if log_level.lower() == "trace" else log_level.upper(), foreign=("uvicorn",)
    )
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,
    )
