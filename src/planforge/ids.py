"""The one rule for names that become ids: users, threads, runs, requests.

It sits at the bottom of the house because more than one layer enforces it: the runtime
checks every id of an execution context, and the configuration store checks API user names
when they are created (a user's name becomes the `user_id` of each run it starts, so a name
the runtime would refuse must never be stored in the first place).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ID_EXAMPLE", "ID_PATTERN", "ID_RULE", "MAX_ID_LENGTH", "id_problem"]

MAX_ID_LENGTH: Final = 128
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
#: The rule in words, for error messages.
ID_RULE: Final = f"1 to {MAX_ID_LENGTH} characters, each a letter, digit or one of _ . : @ -"
#: A name that follows the rule, for error messages.
ID_EXAMPLE: Final = "alice.ops-1"


def id_problem(value: object) -> str | None:
    """What is wrong with `value` as an id (a phrase to follow its name), or None if nothing."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if ID_PATTERN.fullmatch(value) is not None:
        return None
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
    return "may only contain letters, digits and _ . : @ -"
