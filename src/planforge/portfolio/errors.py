"""The portfolio family's errors: a context it cannot plan with is the caller's to fix."""

from __future__ import annotations

from planforge.errors import InvalidContext

__all__ = ["ContextError"]


class ContextError(InvalidContext):
    """A portfolio context that cannot be used, with the field at fault."""

    def __init__(self, field: str, problem: str, source: str = "context") -> None:
        super().__init__(field, problem, kind="portfolio", source=source)
