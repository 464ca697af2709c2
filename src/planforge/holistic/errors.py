"""The holistic layer's errors."""

from __future__ import annotations

from planforge.errors import PlannerError

__all__ = ["ConfigError"]


class ConfigError(PlannerError):
    """A configuration that cannot be used; `key` is the dotted key at fault (None: the file)."""

    def __init__(
        self,
        detail: str,
        *,
        key: str | None = None,
        source: str = "config",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(
            f"{source}: {detail}",
            where="config",
            context={"key": key, "source": source, "line": line, "column": column},
        )
        self.key = key
        self.source = source
        self.line = line
        self.column = column
