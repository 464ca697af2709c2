"""The planner group of the discovery engine: what a found class becomes.

A class whose metadata is plain literals becomes a `PlannerSpec` at once; one the reader cannot
vouch for (a foreign base, a decorator, a computed value, a module without source) is handed
to the `introspect` callback (the factory runs it in the sandbox), or becomes a problem.
Sandbox answers are remembered by the class's file fingerprint, so an unchanged file is not
asked about again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Final

from planforge.contract import PlannerSpec, spec_from_attributes
from planforge.errors import PlannerError
from planforge.factory._entrypoints import EntryPoint
from planforge.factory._metadata import ClassMetadata, ModuleClasses, read_module
from planforge.factory._plugins import PluginScan, stamp
from planforge.factory._reader import read_source

__all__ = [
    "GROUP",
    "NEEDS_SANDBOX",
    "IntrospectionTarget",
    "PlannerGroup",
    "binds_name",
    "module_from_rows",
    "module_rows",
]

GROUP: Final = "planforge.planners"
NEEDS_SANDBOX: Final = "metadata is not literal; needs the sandbox"


@dataclass(frozen=True, slots=True)
class IntrospectionTarget:
    """A class whose metadata only the sandbox can tell; `path` is set for directory plugins."""

    module: str
    qualname: str
    path: str | None
    origin: str
    source: str


Introspect = Callable[[IntrospectionTarget], Mapping[str, Any]]


def module_rows(meta: ModuleClasses) -> tuple[Any, ...]:
    """Marshal-friendly rows of a module's classes, for the per-file cache."""
    return tuple([tuple(c) for c in meta.classes])


def module_from_rows(rows: Any) -> ModuleClasses:
    return ModuleClasses(tuple([ClassMetadata(*row) for row in rows]))


def binds_name(source: bytes | str, name: str) -> bool:
    """Whether module-level code binds `name` other than by a plain class statement.

    When an entry point names something that is no class of its module, a binding of another
    kind (an import, an assignment, a conditional class) means only importing can tell.
    """
    return any(
        kind == "bind" and (name in payload or "*" in payload)
        for kind, payload in read_source(source, ())
    )


def _binds(path: str, name: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return binds_name(handle.read(), name.partition(".")[0])
    except (OSError, SyntaxError, ValueError):
        return False


@dataclass(slots=True)
class PlannerGroup:
    """Planners: `planforge.planners` entry points and `FACTORY_PLUGIN_DIRS` files."""

    introspect: Introspect | None
    old_introspected: Mapping[str, Any] = field(default_factory=dict)
    introspected: dict[str, Any] = field(default_factory=dict)
    group: str = GROUP
    noun: str = "plugin"
    dirs_setting: str = "FACTORY_PLUGIN_DIRS"

    def parse(self, data: bytes, path: str, compiled: CodeType | None = None) -> ModuleClasses:
        return read_module(data, path, compiled)

    def entry_point(self, scan: PluginScan[Any], entry: EntryPoint, path: str | None) -> None:
        module, attr = entry.module, entry.attr
        rank = (2, entry.dist, entry.name)
        intro = IntrospectionTarget(module, attr, None, entry.dist, "entry_point")
        if path is None:
            found = stamp(os.path.join(entry.dist_path, "entry_points.txt"))  # reinstall: ask anew
            why = "its source file was not found (compiled, or not on the search path)"
            self._sandbox(scan, rank, intro, f"{found[0]}:{found[1]}", entry.name, why=why)
            return
        target = f"{module}:{attr}"
        meta, fingerprint = scan.read(path, "entry_point", entry.dist, target)
        if meta is None:
            return
        found_class = meta.get(attr)
        if found_class is None:
            if meta.get(attr.partition(".")[0]) is None and not _binds(path, attr):
                why = f"class {attr} not found in module {module} ({path})"
                scan.problem("entry_point", entry.dist, target, why)
                return
            why = "it is not a plain top-level class statement"
            self._sandbox(scan, rank, intro, fingerprint, entry.name, why=why)
        elif found_class.attributes is None:
            self._sandbox(scan, rank, intro, fingerprint, entry.name, why=found_class.reason)
        else:
            spec_args = ("entry_point", entry.dist, path, fingerprint, entry.name)
            self._literal(scan, rank, found_class.attributes, target, *spec_args)

    def directory_file(
        self, scan: PluginScan[Any], index: int, directory: str, file_name: str, path: str
    ) -> None:
        stem = file_name[:-3]
        meta, fingerprint = scan.read(path, "directory", directory, f"{stem}:*")
        if meta is None:
            return
        for position, cls in enumerate(meta.classes):
            if not cls.is_planner:
                continue
            rank = (1, index, file_name, position)
            if cls.attributes is None:
                intro = IntrospectionTarget(stem, cls.qualname, path, directory, "directory")
                self._sandbox(
                    scan, rank, intro, fingerprint, "", why=cls.reason, abstract_ok=cls.is_base
                )
            elif not cls.is_base or "name" in cls.attributes:  # else an abstract shared base
                target = f"{stem}:{cls.qualname}"
                spec_args = ("directory", directory, path, fingerprint, "")
                self._literal(scan, rank, cls.attributes, target, *spec_args)

    @staticmethod
    def _literal(
        scan: PluginScan[Any],
        rank: tuple[Any, ...],
        attributes: Mapping[str, Any],
        target: str,
        source: str,
        origin: str,
        path: str | None,
        fingerprint: str,
        default_name: str,
    ) -> None:
        try:
            spec = spec_from_attributes(
                attributes,
                target=target,
                source=source,
                origin=origin,
                path=path,
                fingerprint=fingerprint,
                metadata_from="ast",
                default_name=default_name,
            )
        except PlannerError as exc:
            scan.problem(source, origin, target, exc.message)
            return
        scan.add(rank, spec.name, spec)

    def _sandbox(
        self,
        scan: PluginScan[Any],
        rank: tuple[Any, ...],
        intro: IntrospectionTarget,
        fingerprint: str,
        default_name: str,
        *,
        why: str,
        abstract_ok: bool = False,
    ) -> None:
        target = f"{intro.module}:{intro.qualname}"
        path = intro.path
        key = "\0".join((target, intro.source, intro.origin, path or "", fingerprint))
        known = self.introspected if key in self.introspected else self.old_introspected
        row = known.get(key)
        if row is None:
            row = self._ask(scan, intro, target, fingerprint, default_name, abstract_ok, why)
            if row is None:
                return
        self.introspected[key] = row
        if row:
            spec = PlannerSpec(*row)
            scan.add(rank, spec.name, spec)

    def _ask(
        self,
        scan: PluginScan[Any],
        intro: IntrospectionTarget,
        target: str,
        fingerprint: str,
        default_name: str,
        abstract_ok: bool,
        why: str,
    ) -> tuple[Any, ...] | None:
        """The sandbox's answer as a spec row (`()` for an abstract base), None on a problem."""
        if self.introspect is None:
            scan.problem(intro.source, intro.origin, target, f"{NEEDS_SANDBOX} ({why})")
            return None
        try:
            attributes = dict(self.introspect(intro))
            if abstract_ok and not attributes.get("name"):
                return ()
            spec = spec_from_attributes(
                attributes,
                target=target,
                source=intro.source,
                origin=intro.origin,
                path=intro.path,
                fingerprint=fingerprint if intro.path else "",
                metadata_from="sandbox",
                default_name=default_name,
            )
        except PlannerError as exc:
            scan.problem(intro.source, intro.origin, target, exc.message)
            return None
        return tuple(spec)
