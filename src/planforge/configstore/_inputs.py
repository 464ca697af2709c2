"""What the store accepts from its callers: names, free text, tags and row ids.

Every check runs before a transaction opens, so a bad argument changes nothing and costs no
round trip to the database.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from planforge.configstore._models import TAG_LENGTH
from planforge.configstore.errors import InvalidInput

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_TAGS",
    "check_optional_text",
    "check_tags",
    "check_text",
    "findable",
    "now",
    "storable_id",
]

MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_TAGS: Final = 32
_MAX_ID: Final = 2**63 - 1


def now() -> datetime:
    """The time every stored row records: aware, in UTC."""
    return datetime.now(UTC)


def check_text(field: str, value: object, limit: int) -> str:
    """A name-like argument: a non-blank single-line string without outer spaces."""
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(field, value, "must not be empty")
    if value != value.strip():
        raise InvalidInput(field, value, "must not start or end with whitespace")
    if len(value) > limit:
        raise InvalidInput(field, value, f"must be at most {limit} characters")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidInput(field, value, "must not contain control characters or newlines")
    return value


def check_optional_text(field: str, value: object) -> str | None:
    """Free text (a description, a reason): any string the databases can store, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(field, value[:40] + "...", f"must be under {MAX_DOCUMENT_BYTES} chars")
    if "\x00" in value:  # PostgreSQL cannot store it; SQLite would: refuse it on both
        raise InvalidInput(field, value[:40], "must not contain NUL characters")
    return value


def findable(name: object) -> bool:
    """Could a stored name equal this one? A name with a control character (a NUL, which
    PostgreSQL refuses to even compare) was never stored, so a lookup by it finds nothing
    on both databases without asking either."""
    return isinstance(name, str) and not any(unicodedata.category(char) == "Cc" for char in name)


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """A preset's tags: lower case, without duplicates, sorted, at most `MAX_TAGS`."""
    if isinstance(tags, str):
        raise InvalidInput("tags", tags, "give a list of tags, not one string")
    cleaned = {
        check_text("tag", tag.strip().lower() if isinstance(tag, str) else tag, TAG_LENGTH)
        for tag in tags
    }
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput("tags", len(cleaned), f"a preset has at most {MAX_TAGS} tags")
    return tuple(sorted(cleaned))


def storable_id(value: object) -> bool:
    """Whether `value` can be a row id at all; anything else is simply not found (the
    databases reject integers beyond 64 bits with an overflow, not an empty result)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_ID
