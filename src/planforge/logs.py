"""Structured logs: one JSON object a line with `component`, `level`, `msg`, `ts` and fields.

planforge's loggers render JSON through their own processor chain and hand the line to the
standard `logging` logger `planforge.<component>`, so a host application decides where the
lines go. Only the CLI and the server call `configure_logging`; the server also routes its
web server's loggers (uvicorn's access log among them) through the same JSON handler.

Every line is redacted on its way out (`planforge.redact`): a field named like a credential
loses its value, and tokens, `?token=` query values and database URLs quoted in any text
become `[REDACTED]`, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any, Final, TextIO

import structlog

from planforge.redact import REDACTED, is_secret_key, redact_text

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_ROOT = "planforge"
_NESTING_SHOWN: Final = 6  # deeper values of a logged field are shown as their type only
_MAX_TRACE_CHARS: Final = 8000  # the tail of a traceback kept in one log line


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


def _redacted(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if depth >= _NESTING_SHOWN:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(str(key)) else _redacted(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(item, depth + 1) for item in value]
    return redact_text(str(value))


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Credentials never leave in a log line, whichever field carries them."""
    for key, value in event.items():
        if key in ("ts", "level", "component"):
            continue
        event[key] = REDACTED if is_secret_key(key) else _redacted(value)
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
    redact_secrets,
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
    """planforge's own lines pass as rendered; any other record becomes one redacted line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and record.name.startswith(f"{_ROOT}."):
            return message  # rendered and redacted by the processor chain
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "component": record.name.removeprefix(f"{_ROOT}."),
            "msg": redact_text(message),
        }
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            if len(trace) > _MAX_TRACE_CHARS:  # a recursion's trace runs to megabytes
                trace = "...\n" + trace[-_MAX_TRACE_CHARS:]
            line["exception"] = redact_text(trace)
        return json.dumps(line, separators=(",", ":"))


def configure_logging(
    level: str = "INFO", stream: TextIO | None = None, *, foreign: Iterable[str] = ()
) -> None:
    """Send planforge's JSON lines to `stream` (stderr by default) at `level`.

    `foreign` names other libraries' loggers (the server passes `uvicorn`) that should write
    through the same handler, as redacted JSON lines, instead of their own.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_LineFormatter())
    handler._planforge = True  # type: ignore[attr-defined]
    for name in (_ROOT, *foreign):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_planforge", False) or name != _ROOT:
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger(_ROOT).setLevel(level.upper())
