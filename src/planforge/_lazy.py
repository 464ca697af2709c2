"""Package faces that import a module only when one of its names is first asked for (PEP 562).

Every package of planforge re-exports its public names from private modules; importing all of
them eagerly would make `import planforge` and `planforge --help` pay for the factory, numpy
and pydantic. A face lists where each name lives and hands that table to `lazy_exports`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, which offers `exports` (name -> module)."""
    namespace = sys.modules[package].__dict__

    def attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # the next lookup is a plain attribute read
        return value

    def names() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *exports})

    return attribute, names
