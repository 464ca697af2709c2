"""Structured logs: one JSON object a line with `component`, `level`, `msg`, `ts` and fields.

planforge's loggers render JSON through their own processor chain and hand the line to the
standard `logging` logger `planforge.<component>`, so a host application decides where the
lines go. Only the CLI and the server call `configure_logging`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger"]

_ROOT = "planforge"


def add_timestamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["ts"] = round(time.time(), 6)
    return event


def add_level(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["level"] = "warning" if method == "warn" else method
    return event


def rename_event_to_msg(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event["msg"] = event.pop("event", "")
    return event


def render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    head = {key: event.pop(key) for key in ("ts", "level", "component", "msg") if key in event}
    return json.dumps({**head, **event}, default=str, separators=(",", ":"))


_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    add_level,
    add_timestamp,
    rename_event_to_msg,
    structlog.processors.format_exc_info,
    render_json,
]


def get_logger(component: str) -> Any:
    """A structlog logger bound to `component`, writing through `logging`."""
    std = logging.getLogger(f"{_ROOT}.{component}")
    return structlog.wrap_logger(
        std,
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
        component=component,
    )


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message
        return json.dumps(
            {
                "ts": round(record.created, 6),
                "level": record.levelname.lower(),
                "component": record.name.removeprefix(f"{_ROOT}."),
                "msg": message,
            }
        )


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send planforge's JSON lines to `stream` (stderr by default) at `level`."""
    logger = logging.getLogger(_ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, "_planforge", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_LineFormatter())
    handler._planforge = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
