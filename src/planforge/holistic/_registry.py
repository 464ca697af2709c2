"""The registry of holistic modules: found the way planners are, without running their code.

The factory's plugin engine finds them; `_sources.py` holds what makes a class a module. Three
sources, in order of precedence when two declare the same `kind.name`:

1. classes registered in code (`ModuleRegistry.register`), for tests and embedding;
2. plugin directories (`PLANFORGE_MODULE_DIRS`, `os.pathsep` separated): every `*.py` file is
   a module, and its module classes are the top-level classes deriving from one of
   `OpportunityCalculator`, `PatternGenerator`, `SequenceGenerator` or `Filter`;
3. entry points in the group `planforge.modules` (built-ins and installed plugins), read from
   `*.dist-info/entry_points.txt` and located without importing their packages.

Among directories the earlier one wins, then the file name, then the class's position; among
entry points the distribution name, then the entry name. A loser is kept in `shadowed()`.
Parsed files are kept in memory by (size, mtime), so `refresh()` reads only what changed.

Code is imported only by `load(kind, name)`; the loaded class must derive from the kind's base
and carry the metadata its source declared.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planforge.errors import PlannerError
from planforge.factory import PluginProblem, PluginScan, import_file, settle_duplicates
from planforge.holistic import _scan_cache as scan_cache
from planforge.holistic._sources import (
    ENTRY_POINT_GROUP,
    KIND_BASES,
    MODULE_DIRS_ENV,
    Candidate,
    ModuleGroup,
    class_metadata,
    module_dirs_from_env,
)
from planforge.holistic.errors import ModuleLoadError, UnknownModuleError
from planforge.holistic.modules import KINDS, HolisticModule, ModuleMetadata
from planforge.settings import factory_setting

__all__ = [
    "ENTRY_POINT_GROUP",
    "KIND_BASES",
    "MODULE_DIRS_ENV",
    "ModuleRegistry",
    "RegistryProblem",
    "ShadowedModule",
    "default_registry",
    "module_dirs_from_env",
]

#: Something a source declared that could not become a module, and why.
RegistryProblem = PluginProblem


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one pass over the sources found: ranked candidates and problems, in scan order."""

    candidates: tuple[tuple[tuple[Any, ...], Any, Candidate], ...]
    problems: tuple[PluginProblem, ...]


@dataclass(frozen=True, slots=True)
class ShadowedModule:
    """A module that lost a name clash to one of a stronger source."""

    key: str
    kept: str
    kept_source: str
    dropped: str
    dropped_source: str


# -- the registry -----------------------------------------------------------------------------


class ModuleRegistry:
    """Thread-safe (one re-entrant lock). Scans lazily, on first use or `refresh()`."""

    def __init__(
        self,
        *,
        search_path: Sequence[str] | None = None,
        module_dirs: Sequence[Path] = (),
        cache_dir: Path | None = None,
        disk_cache: bool = True,
    ) -> None:
        """`cache_dir` holds what was read from source for the next process (default:
        `FACTORY_CACHE_DIR` or the user's cache directory); `disk_cache=False` reads every
        file in every process."""
        self._search_path = None if search_path is None else tuple(search_path)
        self._module_dirs = tuple(Path(d) for d in module_dirs)
        self._cache_dir = cache_dir
        self._disk_cache = disk_cache
        self._lock = threading.RLock()
        self._parsed: dict[str, tuple[tuple[int, int], Any]] = {}
        self._scan: _Scan | None = None
        self._code: dict[tuple[str, str], Candidate] = {}
        self._table: dict[tuple[str, str], Candidate] | None = None
        self._shadowed: builtins.list[ShadowedModule] = []
        self._loaded: dict[tuple[str, str, str], type[HolisticModule]] = {}

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, search_path: Sequence[str] | None = None
    ) -> ModuleRegistry:
        """A registry over `sys.path` (or `search_path`) and `PLANFORGE_MODULE_DIRS`, its disk
        cache in `FACTORY_CACHE_DIR` and ignored when `FACTORY_FORCE_REDISCOVER` is set."""
        return cls(
            search_path=search_path,
            module_dirs=module_dirs_from_env(environ),
            cache_dir=factory_setting("cache_dir", environ),
            disk_cache=not factory_setting("force_rediscover", environ),
        )

    @property
    def module_dirs(self) -> tuple[Path, ...]:
        return self._module_dirs

    # -- scanning ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the sources again (files whose size and mtime did not change are not re-read)."""
        with self._lock:
            self._scan = self._scan_sources()
            self._table = None

    def _ensure(self) -> dict[tuple[str, str], Candidate]:
        with self._lock:
            if self._scan is None:
                self._scan = self._scan_sources()
                self._table = None
            if self._table is None:
                self._table = self._build_table(self._scan)
            return self._table

    def _scan_sources(self) -> _Scan:
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        module_dirs = tuple(str(d) for d in self._module_dirs)
        cached = (
            scan_cache.cache_file(search_path, module_dirs, self._cache_dir)
            if self._disk_cache
            else None
        )
        if cached is not None and not self._parsed:
            self._parsed = scan_cache.load(cached)
        scan: PluginScan[Any] = PluginScan(ModuleGroup(), search_path, module_dirs, self._parsed)
        scan.run()
        self._parsed = scan.parsed
        if cached is not None and scan.modules_read:
            scan_cache.save(cached, scan.parsed)
        return _Scan(tuple(scan.candidates), tuple(scan.problems))

    def _build_table(self, scan: _Scan) -> dict[tuple[str, str], Candidate]:
        code = [((0,), key, candidate) for key, candidate in self._code.items()]
        table, losers = settle_duplicates([*code, *scan.candidates])
        self._shadowed = [
            ShadowedModule(
                key=winner.key,
                kept=winner.metadata.target,
                kept_source=winner.metadata.source,
                dropped=loser.metadata.target,
                dropped_source=loser.metadata.source,
            )
            for _, winner, loser in sorted(losers, key=lambda item: item[0])
        ]
        return table

    # -- code registration ------------------------------------------------------------------

    def register(self, cls: type[HolisticModule]) -> ModuleMetadata:
        """Register a class defined in code; it wins over any source of the same `kind.name`."""
        if not isinstance(cls, type) or not issubclass(cls, HolisticModule):
            raise PlannerError(
                f"only HolisticModule subclasses can be registered, got {cls!r}.", where="modules"
            )
        metadata = class_metadata(cls)
        base = KIND_BASES[metadata.kind]
        if not issubclass(cls, base):
            raise PlannerError(
                f"module class {metadata.target} declares kind {metadata.kind!r} but does not "
                f"derive from {base.__name__}.",
                where="modules",
            )
        candidate = Candidate(
            metadata=metadata,
            module=cls.__module__,
            qualname=cls.__qualname__,
            path=None,
            docstring=cls.__doc__ or "",
            cls=cls,
        )
        with self._lock:
            self._code[(metadata.kind, metadata.name)] = candidate
            self._table = None
        return metadata

    def unregister(self, kind: str, name: str) -> None:
        """Forget a class registered in code (sources are untouched)."""
        with self._lock:
            if self._code.pop((kind, name), None) is not None:
                self._table = None

    # -- queries ----------------------------------------------------------------------------

    def _lookup(self, kind: str, name: str) -> Candidate:
        with self._lock:
            found = self._ensure().get((kind, name))
            if found is None:
                raise UnknownModuleError(kind, name, self.names(kind))
            return found

    def names(self, kind: str) -> builtins.list[str]:
        """The module names of one kind, sorted."""
        with self._lock:
            return sorted(name for k, name in self._ensure() if k == kind)

    def has(self, kind: str, name: str) -> bool:
        with self._lock:
            return (kind, name) in self._ensure()

    def get_metadata(self, kind: str, name: str) -> ModuleMetadata:
        return self._lookup(kind, name).metadata

    def docstring(self, kind: str, name: str) -> str:
        return self._lookup(kind, name).docstring

    def describe(self, kind: str, name: str, *, load: bool = True) -> dict[str, Any]:
        """Metadata, docstring and (when `load`, which imports the module) default params and
        the params' JSON Schema; an import failure is reported under `load_error`."""
        candidate = self._lookup(kind, name)
        info: dict[str, Any] = {
            "key": candidate.key,
            **candidate.metadata.to_dict(),
            "path": candidate.path,
            "docstring": candidate.docstring,
        }
        if load:
            try:
                cls = self.load(kind, name)
            except ModuleLoadError as exc:
                info["load_error"] = exc.message
            else:
                info["default_params"] = cls.default_params()
                info["params_schema"] = cls.Params.model_json_schema()
        return info

    def problems(self) -> tuple[RegistryProblem, ...]:
        """What the last scan could not use, in scan order (entry points, then directories)."""
        with self._lock:
            self._ensure()
            assert self._scan is not None
            return tuple(self._scan.problems)

    def shadowed(self) -> tuple[ShadowedModule, ...]:
        """Modules hidden by a stronger source (code > directory > entry point), by key."""
        with self._lock:
            self._ensure()
            return tuple(self._shadowed)

    # -- loading ----------------------------------------------------------------------------

    def load(self, kind: str, name: str) -> type[HolisticModule]:
        """Import the module's class (once), checking its base class and metadata."""
        with self._lock:
            candidate = self._lookup(kind, name)
            if candidate.cls is not None:
                return candidate.cls
            cache_key = (kind, name, candidate.metadata.target)
            cached = self._loaded.get(cache_key)
            if cached is not None:
                return cached
            cls = self._import(candidate)
            self._loaded[cache_key] = cls
            if self._table is not None and self._table.get((kind, name)) is candidate:
                self._table[(kind, name)] = replace(candidate, cls=cls)
            return cls

    def _import(self, candidate: Candidate) -> type[HolisticModule]:
        key, target = candidate.key, candidate.metadata.target
        try:
            if candidate.metadata.source == "directory":
                assert candidate.path is not None
                module = import_file(candidate.module, candidate.path)
            else:
                self._extend_sys_path()
                module = importlib.import_module(candidate.module)
            obj: Any = module
            for part in candidate.qualname.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise ModuleLoadError(
                key, target, f"import failed: {type(exc).__name__}: {exc}"
            ) from exc
        base = KIND_BASES[candidate.metadata.kind]
        if not isinstance(obj, type) or not issubclass(obj, base):
            raise ModuleLoadError(
                key, target, f"{candidate.qualname} is not a subclass of {base.__name__}"
            )
        try:
            real = class_metadata(obj)
        except PlannerError as exc:
            raise ModuleLoadError(key, target, exc.message.rstrip(".")) from exc
        declared = candidate.metadata
        for attribute in ("kind", "name", "version", "dependencies"):
            if getattr(real, attribute) != getattr(declared, attribute):
                raise ModuleLoadError(
                    key,
                    target,
                    f"the imported class has {attribute} {getattr(real, attribute)!r} but its "
                    f"source declares {getattr(declared, attribute)!r}; keep metadata as plain "
                    "literal class attributes",
                )
        return obj

    def _extend_sys_path(self) -> None:
        if self._search_path:
            for entry in self._search_path:
                if entry not in sys.path:
                    sys.path.append(entry)

    # `list` last: inside the class body the name would shadow the builtin in annotations.
    def list(self, kind: str | None = None) -> builtins.list[ModuleMetadata]:
        """Every module's metadata (or one kind's), in pipeline kind order, then by name."""
        order: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
        with self._lock:
            table = self._ensure()
            keys = sorted(
                (k for k in table if kind is None or k[0] == kind),
                key=lambda k: (order[k[0]], k[1]),
            )
            return [table[k].metadata for k in keys]


_default: ModuleRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ModuleRegistry:
    """The process-wide registry over `sys.path` and `PLANFORGE_MODULE_DIRS`, made once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModuleRegistry.from_environment()
        return _default
