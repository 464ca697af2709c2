"""Running a plugin module from its file: the one door through which plugin code executes.

Kept free of the rest of the factory, because the sandbox's child imports it before anything
else: it must stay as cheap to import as the standard library it uses.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["import_path"]


def import_path(name: str, path: str) -> ModuleType:
    """Execute the module (or the package, for a directory) at `path` as `name`.

    A module whose code raises is taken out of `sys.modules` again, so a later import tries
    afresh instead of finding a half-built module.
    """
    location, search_locations = path, None
    if os.path.isdir(path):
        location, search_locations = os.path.join(path, "__init__.py"), [path]
    spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=search_locations
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a module from {path!r}", name=name, path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
