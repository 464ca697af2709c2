"""Planner metadata: which classes of a module are planners, and their literal attributes.

The reader (`_reader.py`) reports each class statement as written; here the rules for planners
are applied, once: a class's attributes come from its own body, then its bases in C3 order;
`Planner` (any name or attribute ending in `Planner`) supplies the defaults; a base that is
neither `Planner` nor a class of the same module, a decorator, a class keyword, a rebinding of
the class name, or a non-literal value makes the class "not literal", and its metadata must
then come from the sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any, Final, NamedTuple

from planforge.contract import METADATA_ATTRIBUTES
from planforge.factory._reader import NOT_LITERAL, SourceClass, SourceEvent, read_source

__all__ = ["ClassMetadata", "ModuleClasses", "read_module"]

_ATTRIBUTES: Final = tuple(METADATA_ATTRIBUTES)
_ATTRIBUTE_SET: Final = frozenset(_ATTRIBUTES)


class ClassMetadata(NamedTuple):
    """A top-level class of a module as read from its source.

    `attributes` holds the metadata attributes declared in the class or its same-module
    bases (missing ones take the contract defaults later); it is `None` when the class is
    not literal, and `reason` then says why. A named tuple, since a cold discovery builds
    one per class of every plugin module.
    """

    qualname: str
    is_planner: bool
    is_base: bool
    attributes: dict[str, Any] | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModuleClasses:
    """The top-level classes of one module, in definition order."""

    classes: tuple[ClassMetadata, ...]

    def get(self, qualname: str) -> ClassMetadata | None:
        for cls in self.classes:
            if cls.qualname == qualname:
                return cls
        return None


# --- shared resolver -------------------------------------------------------------------------

_PLANNER: Final = -1
_OBJECT: Final = -2
_UNKNOWN: Final = -3


def _base_kind(base: str, current: dict[str, int]) -> int:
    if base in current:
        return current[base]
    if base == "Planner" or base.endswith(".Planner"):
        return _PLANNER
    if base == "object":
        return _OBJECT
    return _UNKNOWN


def _c3(
    index: int, links: list[tuple[int, ...]], memo: dict[int, list[int] | None]
) -> list[int] | None:
    """C3 linearisation over same-module classes; `None` if the order is inconsistent."""
    if index in memo:
        return memo[index]
    memo[index] = None  # guards against cycles, which valid Python cannot form
    sequences: list[list[int]] = []
    for base in links[index]:
        if base >= 0:
            sub = _c3(base, links, memo)
            if sub is None:
                return None
            sequences.append(list(sub))
        elif base == _PLANNER:
            sequences.append([_PLANNER, _OBJECT])
        else:
            sequences.append([_OBJECT])
    sequences.append(list(links[index]))
    result = [index]
    while True:
        sequences = [seq for seq in sequences if seq]
        if not sequences:
            break
        for seq in sequences:
            head = seq[0]
            if not any(head in other[1:] for other in sequences):
                break
        else:
            return None
        result.append(head)
        for seq in sequences:
            if seq[0] == head:
                del seq[0]
    memo[index] = result
    return result


def _resolve(events: list[SourceEvent]) -> ModuleClasses:
    """Turn the module's class definitions and later bindings into `ModuleClasses`."""
    defs: list[SourceClass] = []
    links: list[tuple[int, ...]] = []
    unknown: list[str] = []
    current: dict[str, int] = {}
    rebound: dict[str, int] = {}
    for kind, payload in events:
        if kind == "bind":
            for name in payload:
                index = current.pop(name, None)
                if index is not None:
                    rebound[name] = index
            continue
        raw: SourceClass = payload
        kinds = tuple(_base_kind(base, current) for base in raw.bases)
        first_unknown = next(
            (base for base, k in zip(raw.bases, kinds, strict=True) if k == _UNKNOWN), ""
        )
        defs.append(raw)
        links.append(kinds)
        unknown.append(first_unknown)
        current[raw.name] = len(defs) - 1
        rebound.pop(raw.name, None)
    used_as_base = {base for kinds in links for base in kinds if base >= 0}
    reported = sorted({*current.values(), *rebound.values()})
    memo: dict[int, list[int] | None] = {}
    classes: list[ClassMetadata] = []
    for index in reported:
        raw = defs[index]
        is_base = index in used_as_base
        kinds = links[index]
        if (
            not raw.flag
            and rebound.get(raw.name) != index
            and _PLANNER in kinds
            and all(k in (_PLANNER, _OBJECT) for k in kinds)
        ):
            simple = _simple_attributes(raw, kinds)
            if simple is not None:
                classes.append(ClassMetadata(raw.name, True, is_base, *simple))
                continue
        known = not any(unknown[i] for i in _ancestors(index, links))
        mro = _c3(index, links, memo) if known else None
        is_planner = any(k == _PLANNER for i in _ancestors(index, links) for k in links[i])
        reason = _not_literal_reason(index, raw, defs, links, unknown, mro, rebound)
        if reason:
            classes.append(ClassMetadata(raw.name, is_planner, is_base, None, reason))
            continue
        assert mro is not None
        attributes, bad = _mro_attributes(mro, defs)
        classes.append(ClassMetadata(raw.name, is_planner, is_base, attributes, bad))
    return ModuleClasses(tuple(classes))


def _mro_attributes(mro: list[int], defs: list[SourceClass]) -> tuple[dict[str, Any] | None, str]:
    """Each attribute from the first class of the MRO that binds it, up to `Planner`."""
    attributes: dict[str, Any] = {}
    for attribute in _ATTRIBUTES:
        for node in mro:
            if node == _PLANNER:
                break
            if node >= 0 and attribute in defs[node].own:
                value = defs[node].own[attribute]
                if value is NOT_LITERAL:
                    return None, f"{attribute!r} in class {defs[node].name} is not a literal"
                attributes[attribute] = value
                break
    return attributes, ""


def _simple_attributes(
    raw: SourceClass, kinds: tuple[int, ...]
) -> tuple[dict[str, Any] | None, str] | None:
    """The common case, a class whose bases are only `Planner` (and `object`)."""
    if kinds.index(_PLANNER) > kinds.index(_OBJECT) if _OBJECT in kinds else False:
        return None  # `object` before `Planner` is an MRO error: leave it to the full path
    own = raw.own
    attributes: dict[str, Any] = {}
    for attribute in _ATTRIBUTES:
        if attribute in own:
            value = own[attribute]
            if value is NOT_LITERAL:
                return None, f"{attribute!r} in class {raw.name} is not a literal"
            attributes[attribute] = value
    return attributes, ""


def _ancestors(index: int, links: list[tuple[int, ...]]) -> Iterator[int]:
    """The class and its same-module bases, each once (bases always precede subclasses)."""
    seen = {index}
    stack = [index]
    while stack:
        node = stack.pop()
        yield node
        for base in links[node]:
            if base >= 0 and base not in seen:
                seen.add(base)
                stack.append(base)


def _not_literal_reason(
    index: int,
    raw: SourceClass,
    defs: list[SourceClass],
    links: list[tuple[int, ...]],
    unknown: list[str],
    mro: list[int] | None,
    rebound: dict[str, int],
) -> str:
    if rebound.get(raw.name) == index:
        return f"the name {raw.name} is rebound at module level after the class"
    for node in sorted(_ancestors(index, links)):
        if unknown[node]:
            return (
                f"class {defs[node].name} inherits from {unknown[node]}, which is neither "
                "Planner nor a class of the same module"
            )
        if defs[node].flag:
            return f"class {defs[node].name} {defs[node].flag}"
    if mro is None:
        return f"class {raw.name} has an inconsistent base order"
    return ""


def read_module(
    source: bytes | str, filename: str = "<plugin>", compiled: CodeType | None = None
) -> ModuleClasses:
    """A module's top-level classes; raises `SyntaxError` for source Python rejects."""
    return _resolve(read_source(source, _ATTRIBUTE_SET, filename, compiled))
