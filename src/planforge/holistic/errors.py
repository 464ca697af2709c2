"""The holistic layer's errors."""

from __future__ import annotations

from collections.abc import Sequence

from planforge.errors import PlannerError
from planforge.holistic.modules import KINDS, MODULE_DIRS_ENV

__all__ = ["ConfigError", "ModuleLoadError", "UnknownModuleError"]


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


class UnknownModuleError(PlannerError):
    """No registered module has this `kind.name`."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        key = f"{kind}.{name}"
        if kind not in KINDS:
            hint = f"{kind!r} is not a module kind; kinds are {', '.join(KINDS)}"
        elif known:
            hint = f"known {kind}: {', '.join(known)}"
        else:
            hint = f"no {kind} are registered; check {MODULE_DIRS_ENV} and installed plugins"
        super().__init__(
            f"No module {key!r}: {hint}.",
            where="modules",
            context={"module": key},
        )
        self.module_key = key
        self.known = tuple(known)


class ModuleLoadError(PlannerError):
    """A registered module could not be imported, or is not what its source declared."""

    def __init__(self, module_key: str, target: str, cause: str) -> None:
        super().__init__(
            f"Module {module_key!r} ({target}) could not be loaded: {cause}. Fix the module, "
            "or disable it in the configuration.",
            where="modules",
            context={"module": module_key, "target": target},
        )
        self.module_key = module_key
        self.target = target
        self.cause = cause
