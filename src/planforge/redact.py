"""Secrets out of text: what every log line and error body passes through last.

Credentials reach text by three roads: a query string (`/ws/events?token=pf_...`), a URL
with user information or a whole database URL (`postgresql://user:pw@host/db`), and an API
token or `Bearer` value quoted in a message. `redact_text` replaces each with `[REDACTED]`;
`is_secret_key` says whether a field's name (`token`, `db_password`, `api_key`, ...) means
its value must never be shown at all. Both are pure and cheap: a line without `=`, `://`,
`pf_` or `bearer` costs one scan by a compiled pattern.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

__all__ = ["REDACTED", "is_secret_key", "redact_text"]

REDACTED: Final = "[REDACTED]"

#: Parts of a key's name that mark its value as a credential (`api_key`, `X-Auth-Token`).
_SECRET_PARTS: Final = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "credential",
        "credentials",
        "key",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sig",
        "signature",
        "token",
    }
)
_KEY_PARTS: Final = re.compile(r"[^a-z0-9]+")
#: A name ending in `url` or `dsn` holds a URL; a database's carries its credentials.
_URL_KEY: Final = re.compile(r"(?:^|[^a-z0-9])(?:database|db|redis|broker|dsn)\w*url$|dsn$")

_DATABASE_SCHEMES: Final = (
    r"(?:postgres(?:ql)?|mysql|mariadb|sqlite|redis|rediss|mongodb(?:\+srv)?|amqps?|mssql|oracle)"
)
#: What follows `scheme://`: anything up to a space or a quote, with a letter or digit in it
#: (so a bare `postgresql://` in a hint is left alone).
_URL_BODY: Final = r"[^\s'\"<>]*[A-Za-z0-9][^\s'\"<>]*"
_PATTERN: Final = re.compile(
    # a whole database URL (with an optional +driver); its host and path say where data is
    rf"(?P<database>\b{_DATABASE_SCHEMES}(?:\+[A-Za-z0-9_]+)?://{_URL_BODY})"
    # user information in any other URL
    r"|(?P<userinfo>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@'\"<>]+@"
    # a `key=value` pair in a query string or a form: redacted when the key names a secret
    r"|(?P<pair>(?:(?<=[?&;\s,])|^)(?P<key>[A-Za-z0-9_.\-\[\]]{1,64})=)(?P<value>[^&;\s'\"<>#]*)"
    # a bearer credential in a header quoted in text
    r"|(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]+"
    # planforge's own API tokens wherever they appear
    r"|(?P<token>\bpf_[A-Za-z0-9_-]{16,})"
)


@lru_cache(maxsize=1024)  # log fields repeat: request_id, route, status, ...
def is_secret_key(name: str) -> bool:
    """True when a field or parameter named `name` holds a credential or a database URL."""
    lowered = name.lower()
    compact = lowered.replace("_", "").replace("-", "")
    if "apikey" in compact or "accesskey" in compact or _URL_KEY.search(lowered):
        return True
    return not _SECRET_PARTS.isdisjoint(_KEY_PARTS.split(lowered))


def _replace(match: re.Match[str]) -> str:
    if match.group("database") is not None:
        scheme = match.group("database").split("://", 1)[0]
        return f"{scheme}://{REDACTED}"
    if match.group("userinfo") is not None:
        return f"{match.group('userinfo')}{REDACTED}@"
    if match.group("pair") is not None:
        if is_secret_key(match.group("key")) and match.group("value"):
            return f"{match.group('pair')}{REDACTED}"
        return match.group(0)
    if match.group("bearer") is not None:
        return f"{match.group('bearer')}{REDACTED}"
    return REDACTED


def redact_text(text: str) -> str:
    """`text` with every credential it quotes replaced by `[REDACTED]`."""
    if not text:
        return text
    return _PATTERN.sub(_replace, text)
