"""Where holistic modules come from, found the way planners are: without running their code.

Three sources, in order of precedence when two declare the same `kind.name`:

1. classes registered in code (`ModuleRegistry.register`), for tests and embedding;
2. plugin directories (`PLANFORGE_MODULE_DIRS`, `os.pathsep` separated): every `*.py` file is
   a module, and its module classes are the top-level classes deriving from one of
   `OpportunityCalculator`, `PatternGenerator`, `SequenceGenerator` or `Filter`;
3. entry points in the group `planforge.modules` (built-ins and installed plugins), read from
   `*.dist-info/entry_points.txt` and located without importing their packages.

A loser is kept in `shadowed()`. Metadata is read from the source with `ast`: the kind from
the base class name (or a literal `kind` attribute), the rest from literal class attributes,
inheriting from classes of the same module (first base first). Anything unreadable or invalid
(no name, a bad semantic version, an unknown kind, a non-literal value) is a reported problem,
never a crash. Parsed files are cached in memory by (size, mtime).

Code is imported only by `load(kind, name)`; the loaded class must derive from the kind's base
and carry the metadata its source declared.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from planforge.errors import PlannerError
from planforge.factory.entrypoints import scan_entry_points
from planforge.factory.locate import ModuleLocator
from planforge.holistic.modules import (
    KINDS,
    Filter,
    HolisticModule,
    ModuleMetadata,
    OpportunityCalculator,
    PatternGenerator,
    SequenceGenerator,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "KIND_BASES",
    "MODULE_DIRS_ENV",
    "ModuleLoadError",
    "ModuleRegistry",
    "RegistryProblem",
    "ShadowedModule",
    "UnknownModuleError",
    "default_registry",
    "module_dirs_from_env",
]

ENTRY_POINT_GROUP: Final = "planforge.modules"
MODULE_DIRS_ENV: Final = "PLANFORGE_MODULE_DIRS"

#: The base class of each kind; a module class must derive from its kind's base.
KIND_BASES: Final[Mapping[str, type[HolisticModule]]] = {
    "opportunity_calculators": OpportunityCalculator,
    "pattern_generators": PatternGenerator,
    "sequence_generators": SequenceGenerator,
    "filters": Filter,
}
_KIND_OF_BASE: Final = {base.__name__: kind for kind, base in KIND_BASES.items()}
_ROOT_BASE: Final = HolisticModule.__name__
_ATTRIBUTES: Final = ("kind", "name", "version", "author", "description", "tags", "dependencies")
_DEFAULTS: Final[Mapping[str, Any]] = {
    "version": HolisticModule.version,
    "author": "",
    "description": "",
    "tags": (),
    "dependencies": (),
}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_MAX_SOURCE_BYTES = 4 << 20
_ORIGIN_RANK: Final = {"code": 0, "directory": 1, "entry_point": 2}


# -- errors -----------------------------------------------------------------------------------


class UnknownModuleError(PlannerError):
    """No registered module has this `kind.name`."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        key = f"{kind}.{name}"
        if kind not in KIND_BASES:
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


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryProblem:
    """Something a source declared that could not become a module, and why."""

    source: str  # "entry_point", "directory" or "code"
    origin: str  # the distribution, directory or file
    target: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "origin": self.origin,
            "target": self.target,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ShadowedModule:
    """A module that lost a name clash to one of a stronger source."""

    key: str
    kept: str
    kept_source: str
    dropped: str
    dropped_source: str


@dataclass(frozen=True, slots=True)
class _Candidate:
    metadata: ModuleMetadata
    module: str  # import name
    qualname: str
    path: str | None
    docstring: str
    rank: tuple[Any, ...]
    cls: type[HolisticModule] | None = None

    @property
    def key(self) -> str:
        return f"{self.metadata.kind}.{self.metadata.name}"


@dataclass(frozen=True, slots=True)
class _SourceClass:
    """A module class as read from source: its resolved attributes, or why it is unusable."""

    qualname: str
    attributes: dict[str, Any] | None
    docstring: str
    reason: str = ""
    is_base: bool = False
    #: Derives from a class of another module and may not be a module at all.
    uncertain: bool = False


@dataclass(slots=True)
class _RawClass:
    name: str
    bases: tuple[str, ...]
    own: dict[str, Any]
    docstring: str


@dataclass(slots=True)
class _Scan:
    candidates: list[_Candidate] = field(default_factory=list)
    problems: list[RegistryProblem] = field(default_factory=list)


class _NotLiteral:
    __slots__ = ()


_NOT_LITERAL: Final = _NotLiteral()


# -- reading source ---------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _raw_class(node: ast.ClassDef) -> _RawClass:
    own: dict[str, Any] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name) and target.id in _ATTRIBUTES:
                    own[target.id] = _literal(stmt.value)
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id in _ATTRIBUTES
            and stmt.value is not None
        ):
            own[stmt.target.id] = _literal(stmt.value)
    bases = tuple(_dotted(base) for base in node.bases)
    return _RawClass(node.name, bases, own, ast.get_docstring(node) or "")


def read_module_classes(source: bytes | str) -> list[_SourceClass]:
    """The module classes of one source file, in definition order. Raises SyntaxError."""
    tree = ast.parse(source)
    raws: dict[str, _RawClass] = {}
    order: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            raws[stmt.name] = _raw_class(stmt)
            if stmt.name in order:
                order.remove(stmt.name)
            order.append(stmt.name)
    used_as_base = {
        base for raw in raws.values() for base in raw.bases if base in raws and base != raw.name
    }
    found: list[_SourceClass] = []
    for name in order:
        raw = raws[name]
        attributes, base_kind, is_module, foreign = _resolve(raw, raws, ())
        is_base = name in used_as_base
        if not is_module:
            if not foreign:
                continue  # a plain class, not a module
            if attributes.get("kind") not in KIND_BASES:
                # Maybe a module through a base imported from elsewhere; only an entry point
                # naming it makes that worth a problem report.
                reason = (
                    f"class {name} derives from {foreign}, defined in another module, so its "
                    "kind cannot be read without importing it; derive from a module kind "
                    "(OpportunityCalculator, PatternGenerator, SequenceGenerator, Filter) or "
                    "declare a literal `kind`"
                )
                found.append(_SourceClass(name, None, raw.docstring, reason, is_base, True))
                continue
        if "kind" not in attributes and base_kind:
            attributes["kind"] = base_kind
        bad = sorted(key for key, value in attributes.items() if value is _NOT_LITERAL)
        if bad:
            reason = (
                f"class {name}: {', '.join(bad)} must be plain literals so the metadata can be "
                "read without importing the module"
            )
            found.append(_SourceClass(name, None, raw.docstring, reason, is_base))
            continue
        found.append(_SourceClass(name, attributes, raw.docstring, "", is_base))
    return found


def _resolve(
    raw: _RawClass, raws: Mapping[str, _RawClass], seen: tuple[str, ...]
) -> tuple[dict[str, Any], str, bool, str]:
    """Own attributes merged over same-module bases (first base first), the kind of its module
    base, whether it derives from a module base, and its first base from another module."""
    attributes: dict[str, Any] = {}
    base_kind = ""
    is_module = False
    foreign = ""
    for base in raw.bases:
        short = base.rsplit(".", 1)[-1]
        if base in raws and base not in seen and base != raw.name:
            inherited, kind, module, other = _resolve(raws[base], raws, (*seen, raw.name))
            for key, value in inherited.items():
                attributes.setdefault(key, value)
            is_module = is_module or module
            base_kind = base_kind or kind
            foreign = foreign or other
        elif short in _KIND_OF_BASE:
            is_module = True
            base_kind = base_kind or _KIND_OF_BASE[short]
        elif short == _ROOT_BASE:
            is_module = True
        elif short != "object":
            foreign = foreign or (base or "<expression>")
    merged = dict(raw.own)
    for key, value in attributes.items():
        merged.setdefault(key, value)
    return merged, base_kind, is_module, foreign


def _validate(attributes: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Complete and check the attributes read from source; `(None, why)` when invalid."""
    values: dict[str, Any] = {**_DEFAULTS, **attributes}
    kind = values.get("kind")
    if kind not in KIND_BASES:
        return None, f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}"
    name = values.get("name")
    if not isinstance(name, str) or not name:
        return None, "it declares no name (set a non-empty literal `name`)"
    if not _NAME.match(name):
        return None, (
            f"name {name!r} is not valid: use letters, digits, '_' and '-' (no dots or spaces)"
        )
    version = values["version"]
    if not isinstance(version, str) or not ModuleMetadata.valid_version(version):
        return None, f"version {version!r} is not a semantic version like 1.2.3"
    for text in ("author", "description"):
        if not isinstance(values[text], str):
            return None, f"{text} must be a string, got {type(values[text]).__name__}"
    for items in ("tags", "dependencies"):
        value = values[items]
        if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
            return None, f"{items} must be a tuple of strings, got {value!r}"
        values[items] = tuple(value)
    return values, ""


def _metadata(values: Mapping[str, Any], target: str, source: str) -> ModuleMetadata:
    return ModuleMetadata(
        name=values["name"],
        kind=values["kind"],
        version=values["version"],
        author=values["author"],
        description=values["description"],
        tags=tuple(values["tags"]),
        dependencies=tuple(values["dependencies"]),
        target=target,
        source=source,
    )


def _class_metadata(cls: type[HolisticModule]) -> ModuleMetadata:
    """The metadata a loaded class really carries, checked like source metadata."""
    values, reason = _validate({attribute: getattr(cls, attribute) for attribute in _ATTRIBUTES})
    if values is None:
        raise PlannerError(
            f"module class {cls.__module__}.{cls.__qualname__} cannot be registered: {reason}.",
            where="modules",
        )
    return _metadata(values, f"{cls.__module__}:{cls.__qualname__}", "code")


def module_dirs_from_env(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The directories named by `PLANFORGE_MODULE_DIRS` (empty entries ignored)."""
    raw = (os.environ if environ is None else environ).get(MODULE_DIRS_ENV, "")
    return [Path(part) for part in raw.split(os.pathsep) if part.strip()]


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


# -- the registry -----------------------------------------------------------------------------


class ModuleRegistry:
    """Thread-safe (one re-entrant lock). Scans lazily, on first use or `refresh()`."""

    def __init__(
        self, *, search_path: Sequence[str] | None = None, module_dirs: Sequence[Path] = ()
    ) -> None:
        self._search_path = None if search_path is None else tuple(search_path)
        self._module_dirs = tuple(Path(d) for d in module_dirs)
        self._lock = threading.RLock()
        self._parsed: dict[str, tuple[tuple[int, int], list[_SourceClass] | str]] = {}
        self._scan: _Scan | None = None
        self._code: dict[tuple[str, str], _Candidate] = {}
        self._table: dict[tuple[str, str], _Candidate] | None = None
        self._shadowed: builtins.list[ShadowedModule] = []
        self._loaded: dict[tuple[str, str, str], type[HolisticModule]] = {}

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, search_path: Sequence[str] | None = None
    ) -> ModuleRegistry:
        """A registry over `sys.path` (or `search_path`) and `PLANFORGE_MODULE_DIRS`."""
        return cls(search_path=search_path, module_dirs=module_dirs_from_env(environ))

    @property
    def module_dirs(self) -> tuple[Path, ...]:
        return self._module_dirs

    # -- scanning ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the sources again (files whose size and mtime did not change are not re-read)."""
        with self._lock:
            self._scan = self._scan_sources()
            self._table = None

    def _ensure(self) -> dict[tuple[str, str], _Candidate]:
        with self._lock:
            if self._scan is None:
                self._scan = self._scan_sources()
                self._table = None
            if self._table is None:
                self._table = self._build_table(self._scan)
            return self._table

    def _scan_sources(self) -> _Scan:
        scan = _Scan()
        previous, self._parsed = self._parsed, {}
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        for index, directory in enumerate(self._module_dirs):
            self._scan_directory(scan, index, str(directory), previous)
        self._scan_entry_points(scan, search_path, previous)
        return scan

    def _parse(
        self, path: str, previous: Mapping[str, tuple[tuple[int, int], Any]]
    ) -> list[_SourceClass] | str:
        stamp = _stamp(path)
        if stamp is None:
            return f"cannot read {path}"
        known = self._parsed.get(path) or previous.get(path)
        if known is not None and known[0] == stamp:
            self._parsed[path] = known
            result: list[_SourceClass] | str = known[1]
            return result
        if stamp[0] > _MAX_SOURCE_BYTES:
            result = f"{path} is larger than {_MAX_SOURCE_BYTES} bytes; not read"
        else:
            try:
                with open(path, "rb") as handle:
                    result = read_module_classes(handle.read())
            except OSError as exc:
                result = f"cannot read {path}: {exc.strerror or exc}"
            except (SyntaxError, ValueError) as exc:
                result = f"{path} is not valid Python: {exc}"
        self._parsed[path] = (stamp, result)
        return result

    def _scan_directory(
        self,
        scan: _Scan,
        index: int,
        directory: str,
        previous: Mapping[str, tuple[tuple[int, int], Any]],
    ) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            scan.problems.append(
                RegistryProblem(
                    "directory",
                    directory,
                    directory,
                    f"module directory cannot be listed ({exc.strerror or exc}); "
                    f"fix {MODULE_DIRS_ENV}",
                )
            )
            return
        for file_name in names:
            stem, dot, suffix = file_name.rpartition(".")
            if not dot or suffix != "py" or not stem.isidentifier() or stem == "__init__":
                continue
            path = os.path.join(directory, file_name)
            parsed = self._parse(path, previous)
            if isinstance(parsed, str):
                scan.problems.append(RegistryProblem("directory", directory, path, parsed))
                continue
            import_name = _directory_module_name(path, stem)
            for position, found in enumerate(parsed):
                if found.uncertain:
                    continue  # not provably a module class; a helper of the plugin
                target = f"{path}:{found.qualname}"
                candidate = self._candidate(
                    scan,
                    found,
                    source="directory",
                    origin=directory,
                    target=target,
                    module=import_name,
                    path=path,
                    rank=(1, index, file_name, position),
                )
                if candidate is not None:
                    scan.candidates.append(candidate)

    def _scan_entry_points(
        self,
        scan: _Scan,
        search_path: Sequence[str],
        previous: Mapping[str, tuple[tuple[int, int], Any]],
    ) -> None:
        found_points = scan_entry_points(ENTRY_POINT_GROUP, search_path)
        for problem in found_points.problems:
            scan.problems.append(
                RegistryProblem(
                    "entry_point",
                    problem.dist,
                    f"{problem.file}:{problem.line}",
                    f"malformed entry point line: {problem.reason}",
                )
            )
        locator = ModuleLocator(search_path)
        order = 0
        for dist in found_points.dists:
            for entry in dist.entries:
                order += 1
                target = f"{entry.module}:{entry.attr}"
                if not entry.attr:
                    reason = "the entry point names a module, not a class; write module:Class"
                    scan.problems.append(RegistryProblem("entry_point", entry.dist, target, reason))
                    continue
                path = locator.locate(entry.module)
                if path is None:
                    reason = (
                        f"the source of module {entry.module} was not found on the search path "
                        "(compiled or missing), so its metadata cannot be read without importing it"
                    )
                    scan.problems.append(RegistryProblem("entry_point", entry.dist, target, reason))
                    continue
                parsed = self._parse(path, previous)
                if isinstance(parsed, str):
                    scan.problems.append(RegistryProblem("entry_point", entry.dist, target, parsed))
                    continue
                match = next((c for c in parsed if c.qualname == entry.attr), None)
                if match is None:
                    reason = (
                        f"no top-level module class {entry.attr} (deriving from a module kind) "
                        f"in {path}"
                    )
                    scan.problems.append(RegistryProblem("entry_point", entry.dist, target, reason))
                    continue
                candidate = self._candidate(
                    scan,
                    match,
                    source="entry_point",
                    origin=entry.dist,
                    target=target,
                    module=entry.module,
                    path=path,
                    rank=(2, order),
                    explicit=True,
                )
                if candidate is None:
                    continue
                if candidate.metadata.name != entry.name:
                    scan.problems.append(
                        RegistryProblem(
                            "entry_point",
                            entry.dist,
                            target,
                            f"the entry point is named {entry.name!r} but the class declares "
                            f"name {candidate.metadata.name!r}; the class's name is used",
                        )
                    )
                scan.candidates.append(candidate)

    @staticmethod
    def _candidate(
        scan: _Scan,
        found: _SourceClass,
        *,
        source: str,
        origin: str,
        target: str,
        module: str,
        path: str,
        rank: tuple[Any, ...],
        explicit: bool = False,
    ) -> _Candidate | None:
        if found.attributes is None:
            scan.problems.append(RegistryProblem(source, origin, target, found.reason))
            return None
        if found.is_base and not explicit and not found.attributes.get("name"):
            return None  # an abstract base shared by the file's modules
        values, reason = _validate(found.attributes)
        if values is None:
            scan.problems.append(RegistryProblem(source, origin, target, reason))
            return None
        return _Candidate(
            metadata=_metadata(values, target, source),
            module=module,
            qualname=found.qualname,
            path=path,
            docstring=found.docstring,
            rank=rank,
        )

    def _build_table(self, scan: _Scan) -> dict[tuple[str, str], _Candidate]:
        groups: dict[tuple[str, str], builtins.list[_Candidate]] = {}
        for candidate in (*self._code.values(), *scan.candidates):
            key = (candidate.metadata.kind, candidate.metadata.name)
            groups.setdefault(key, []).append(candidate)
        table: dict[tuple[str, str], _Candidate] = {}
        shadowed: builtins.list[ShadowedModule] = []
        for key in sorted(groups):
            ranked = sorted(groups[key], key=lambda c: c.rank)
            winner = ranked[0]
            table[key] = winner
            for loser in ranked[1:]:
                shadowed.append(
                    ShadowedModule(
                        key=winner.key,
                        kept=winner.metadata.target,
                        kept_source=winner.metadata.source,
                        dropped=loser.metadata.target,
                        dropped_source=loser.metadata.source,
                    )
                )
        self._shadowed = shadowed
        return table

    # -- code registration ------------------------------------------------------------------

    def register(self, cls: type[HolisticModule]) -> ModuleMetadata:
        """Register a class defined in code; it wins over any source of the same `kind.name`."""
        if not isinstance(cls, type) or not issubclass(cls, HolisticModule):
            raise PlannerError(
                f"only HolisticModule subclasses can be registered, got {cls!r}.", where="modules"
            )
        metadata = _class_metadata(cls)
        base = KIND_BASES[metadata.kind]
        if not issubclass(cls, base):
            raise PlannerError(
                f"module class {metadata.target} declares kind {metadata.kind!r} but does not "
                f"derive from {base.__name__}.",
                where="modules",
            )
        candidate = _Candidate(
            metadata=metadata,
            module=cls.__module__,
            qualname=cls.__qualname__,
            path=None,
            docstring=cls.__doc__ or "",
            rank=(0,),
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

    def _lookup(self, kind: str, name: str) -> _Candidate:
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
        """What the last scan could not use, in scan order (directories, then entry points)."""
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

    def _import(self, candidate: _Candidate) -> type[HolisticModule]:
        key, target = candidate.key, candidate.metadata.target
        try:
            if candidate.metadata.source == "directory":
                assert candidate.path is not None
                module = _import_file(candidate.module, candidate.path)
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
            real = _class_metadata(obj)
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


def _directory_module_name(path: str, stem: str) -> str:
    """A private import name per file, so a plugin called `json.py` cannot shadow `json`."""
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    return f"_planforge_module_{digest}_{stem}"


def _import_file(name: str, path: str) -> Any:
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == path:
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_default: ModuleRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ModuleRegistry:
    """The process-wide registry over `sys.path` and `PLANFORGE_MODULE_DIRS`, made once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModuleRegistry.from_environment()
        return _default
