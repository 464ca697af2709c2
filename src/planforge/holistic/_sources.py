"""Holistic modules as a group of the factory's plugin engine: what a found class becomes.

The engine finds the files (entry points of `planforge.modules`, `PLANFORGE_MODULE_DIRS`) and
reads their classes; here the rules of modules apply. A module class derives from one of the
kind bases (`OpportunityCalculator`, `PatternGenerator`, `SequenceGenerator`, `Filter`) or from
`HolisticModule` with a literal `kind`; its kind comes from that base (or the literal), the rest
from literal class attributes, inherited from classes of the same module (first base first).
Anything unreadable or invalid (no name, a bad semantic version, an unknown kind, a non-literal
value) is a reported problem, never a crash.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any, Final

from planforge.errors import PlannerError
from planforge.factory import NOT_LITERAL, EntryPoint, PluginScan, SourceClass, read_source
from planforge.holistic.modules import (
    KINDS,
    MODULE_DIRS_ENV,
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
    "Candidate",
    "ModuleGroup",
    "class_metadata",
    "directory_module_name",
    "module_dirs_from_env",
]

ENTRY_POINT_GROUP: Final = "planforge.modules"

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
_WANTED: Final = frozenset(_ATTRIBUTES)
_DEFAULTS: Final[Mapping[str, Any]] = {
    "version": HolisticModule.version,
    "author": "",
    "description": "",
    "tags": (),
    "dependencies": (),
}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A module class some source declares (or code registered), ready to be ranked."""

    metadata: ModuleMetadata
    module: str  # import name
    qualname: str
    path: str | None
    docstring: str
    cls: type[HolisticModule] | None = None

    @property
    def key(self) -> str:
        return f"{self.metadata.kind}.{self.metadata.name}"


@dataclass(frozen=True, slots=True)
class _ModuleClass:
    """A module class as read from source: its resolved attributes, or why it is unusable."""

    qualname: str
    attributes: dict[str, Any] | None
    docstring: str
    reason: str = ""
    is_base: bool = False
    #: Derives from a class of another module and may not be a module at all.
    uncertain: bool = False


def module_dirs_from_env(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The directories named by `PLANFORGE_MODULE_DIRS` (empty entries ignored)."""
    raw = (os.environ if environ is None else environ).get(MODULE_DIRS_ENV, "")
    return [Path(part) for part in raw.split(os.pathsep) if part.strip()]


def read_module_classes(
    source: bytes | str, filename: str = "<module>", compiled: CodeType | None = None
) -> list[_ModuleClass]:
    """The module classes of one source file, in definition order. Raises SyntaxError."""
    raws: dict[str, SourceClass] = {}
    for kind, payload in read_source(source, _WANTED, filename, compiled):
        if kind == "class":
            raws.pop(payload.name, None)  # a later statement of the same name replaces it
            raws[payload.name] = payload
    used_as_base = {b for raw in raws.values() for b in raw.bases if b in raws and b != raw.name}
    found: list[_ModuleClass] = []
    for name, raw in raws.items():
        attributes, base_kind, is_module, foreign = _resolve(raw, raws, ())
        is_base, doc = name in used_as_base, inspect.cleandoc(raw.docstring)
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
                found.append(_ModuleClass(name, None, doc, reason, is_base, True))
                continue
        if "kind" not in attributes and base_kind:
            attributes["kind"] = base_kind
        bad = sorted(key for key, value in attributes.items() if value is NOT_LITERAL)
        if bad:
            reason = (
                f"class {name}: {', '.join(bad)} must be plain literals so the metadata can be "
                "read without importing the module"
            )
            found.append(_ModuleClass(name, None, doc, reason, is_base))
            continue
        found.append(_ModuleClass(name, attributes, doc, "", is_base))
    return found


def _resolve(
    raw: SourceClass, raws: Mapping[str, SourceClass], seen: tuple[str, ...]
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


def class_metadata(cls: type[HolisticModule]) -> ModuleMetadata:
    """The metadata a loaded class really carries, checked like source metadata."""
    values, reason = _validate({attribute: getattr(cls, attribute) for attribute in _ATTRIBUTES})
    if values is None:
        raise PlannerError(
            f"module class {cls.__module__}.{cls.__qualname__} cannot be registered: {reason}.",
            where="modules",
        )
    return _metadata(values, f"{cls.__module__}:{cls.__qualname__}", "code")


class ModuleGroup:
    """Holistic modules: `planforge.modules` entry points and `PLANFORGE_MODULE_DIRS` files."""

    group = ENTRY_POINT_GROUP
    noun = "module"
    dirs_setting = MODULE_DIRS_ENV

    def parse(self, data: bytes, path: str, compiled: CodeType | None = None) -> list[_ModuleClass]:
        return read_module_classes(data, path, compiled)

    def entry_point(
        self, scan: PluginScan[list[_ModuleClass]], entry: EntryPoint, path: str | None
    ) -> None:
        target = f"{entry.module}:{entry.attr}"
        if path is None:
            reason = (
                f"the source of module {entry.module} was not found on the search path "
                "(compiled or missing), so its metadata cannot be read without importing it"
            )
            scan.problem("entry_point", entry.dist, target, reason)
            return
        parsed, _ = scan.read(path, "entry_point", entry.dist, target)
        if parsed is None:
            return
        match = next((c for c in parsed if c.qualname == entry.attr), None)
        if match is None:
            reason = (
                f"no top-level module class {entry.attr} (deriving from a module kind) in {path}"
            )
            scan.problem("entry_point", entry.dist, target, reason)
            return
        where = ("entry_point", entry.dist, target, entry.module, path)
        candidate = _candidate(scan, match, *where, explicit=True)
        if candidate is None:
            return
        if candidate.metadata.name != entry.name:
            reason = (
                f"the entry point is named {entry.name!r} but the class declares name "
                f"{candidate.metadata.name!r}; the class's name is used"
            )
            scan.problem("entry_point", entry.dist, target, reason)
        scan.add((2, entry.dist, entry.name), _key(candidate), candidate)

    def directory_file(
        self,
        scan: PluginScan[list[_ModuleClass]],
        index: int,
        directory: str,
        file_name: str,
        path: str,
    ) -> None:
        parsed, _ = scan.read(path, "directory", directory, path)
        if parsed is None:
            return
        import_name = directory_module_name(path, file_name[:-3])
        for position, found in enumerate(parsed):
            if found.uncertain:
                continue  # not provably a module class; a helper of the plugin
            where = ("directory", directory, f"{path}:{found.qualname}", import_name, path)
            candidate = _candidate(scan, found, *where)
            if candidate is not None:
                scan.add((1, index, file_name, position), _key(candidate), candidate)


def _key(candidate: Candidate) -> tuple[str, str]:
    return (candidate.metadata.kind, candidate.metadata.name)


def _candidate(
    scan: PluginScan[list[_ModuleClass]],
    found: _ModuleClass,
    source: str,
    origin: str,
    target: str,
    module: str,
    path: str,
    *,
    explicit: bool = False,
) -> Candidate | None:
    if found.attributes is None:
        scan.problem(source, origin, target, found.reason)
        return None
    if found.is_base and not explicit and not found.attributes.get("name"):
        return None  # an abstract base shared by the file's modules
    values, reason = _validate(found.attributes)
    if values is None:
        scan.problem(source, origin, target, reason)
        return None
    metadata = _metadata(values, target, source)
    return Candidate(metadata, module, found.qualname, path, found.docstring)


def directory_module_name(path: str, stem: str) -> str:
    """A private import name per file, so a plugin called `json.py` cannot shadow `json`."""
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    return f"_planforge_module_{digest}_{stem}"
