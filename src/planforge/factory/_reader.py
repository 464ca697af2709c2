"""Read a plugin file's top-level classes and their literal attributes, never running it.

Python's own parser (`ast`) reads the whole file, so a file it rejects is a `SyntaxError` with
its line number, never a healthy plugin, and every value is what `ast.literal_eval` makes of it.
What a group does with the classes is its business: this module reports, in order, each class
statement and each other binding of a module-level name.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Collection
from types import CodeType
from typing import Any, Final, NamedTuple

__all__ = [
    "DECORATED",
    "NOT_LITERAL",
    "SourceClass",
    "SourceEvent",
    "literal_value",
    "read_source",
]


class _NotLiteral:
    """Marks an attribute bound to something other than a literal."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not literal>"


NOT_LITERAL: Final = _NotLiteral()
DECORATED: Final = "is decorated; a decorator may change its metadata"


class SourceClass(NamedTuple):
    """A top-level class statement as written.

    `own` maps each wanted attribute the body binds to its literal value, or to `NOT_LITERAL`;
    `flag` says why a decorator or class keyword may change the class (empty when neither);
    `bases` are dotted names (`<expression>` for anything else); `docstring` is raw.
    """

    name: str
    bases: tuple[str, ...]
    own: dict[str, Any]
    flag: str
    docstring: str
    line: int


#: ("class", SourceClass) or ("bind", names bound at module level by another statement)
SourceEvent = tuple[str, Any]

# CPython 3.11's AST builder keeps its recursion depth in state shared by threads: two parses
# at once can fail with "AST constructor recursion depth mismatch"
_PARSE_LOCK: Final = threading.Lock()
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_PLAIN_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _bound_names(node: ast.AST) -> list[str]:
    """Names a statement binds in the scope it runs in (nested scopes excluded)."""
    if isinstance(node, _PLAIN_DEFS) and not node.decorator_list:  # the common statements
        return [node.name]
    if isinstance(node, ast.Pass) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    ):
        return []
    names: list[str] = []
    stack: list[ast.AST] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(item.name)
            stack.extend(item.decorator_list)
            if isinstance(item, ast.ClassDef):
                stack.extend(item.bases)
            continue
        if isinstance(item, ast.Lambda):
            continue
        if isinstance(item, ast.AnnAssign) and item.value is None:
            continue  # a bare annotation declares, it does not bind
        if isinstance(item, ast.Name) and isinstance(item.ctx, ast.Store | ast.Del):
            names.append(item.id)
        elif isinstance(item, ast.alias):
            names.append("*" if item.name == "*" else (item.asname or item.name.split(".")[0]))
        elif isinstance(item, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and item.name:
            names.append(item.name)
        elif isinstance(item, ast.MatchMapping) and item.rest:
            names.append(item.rest)
        if isinstance(item, _COMPREHENSIONS):
            stack.extend(n for n in ast.walk(item) if isinstance(n, ast.NamedExpr))
            continue
        stack.extend(ast.iter_child_nodes(item))
    return names


def literal_value(node: ast.expr) -> Any:
    """What `ast.literal_eval` makes of the expression, or `NOT_LITERAL`."""
    if type(node) is ast.Constant:  # what literal_eval would return, without its call
        return node.value
    if type(node) is ast.Tuple and all(type(item) is ast.Constant for item in node.elts):
        return tuple([item.value for item in node.elts])  # type: ignore[attr-defined]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_LITERAL


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _own(node: ast.ClassDef, wanted: Collection[str]) -> dict[str, Any]:
    """The wanted attributes the class body binds; any binding but a literal one taints."""
    own: dict[str, Any] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            value: tuple[Any] | None = None
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    if target.id in wanted:
                        if value is None:
                            value = (literal_value(stmt.value),)
                        own[target.id] = value[0]
                    continue
                for name in _bound_names(target):
                    if name in wanted:
                        own[name] = NOT_LITERAL
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.value is not None and stmt.target.id in wanted:
                own[stmt.target.id] = literal_value(stmt.value)
        else:
            for name in _bound_names(stmt):
                if name in wanted:
                    own[name] = NOT_LITERAL
    return own


def _source_class(node: ast.ClassDef, wanted: Collection[str]) -> SourceClass:
    flag = ""
    if node.decorator_list:
        flag = DECORATED
    elif node.keywords:
        flag = "uses class keywords (a metaclass may change its metadata)"
    first = node.body[0]
    docstring = ""
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        docstring = first.value.value
    bases = tuple(_dotted(base) or "<expression>" for base in node.bases)
    return SourceClass(node.name, bases, _own(node, wanted), flag, docstring, node.lineno)


def read_source(
    source: bytes | str,
    wanted: Collection[str],
    filename: str = "<plugin>",
    compiled: CodeType | None = None,
) -> list[SourceEvent]:
    """The module's class statements and other bindings, in order.

    `compiled`, the file's code from a fresh bytecode cache, proves it compiles and spares most
    of the parse (`_compiled.py`). Raises `SyntaxError` (with `lineno`) for a file Python
    rejects, `ValueError` for null bytes.
    """
    if compiled is not None:
        from planforge.factory._compiled import read_compiled  # it builds on this module

        data = source if isinstance(source, bytes) else source.encode()
        if (fast := read_compiled(compiled, data, wanted)) is not None:
            return fast
    with _PARSE_LOCK:
        tree = ast.parse(source, filename)
    events: list[SourceEvent] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            events.append(("class", _source_class(stmt, wanted)))
            continue
        names = _bound_names(stmt)
        if "*" in names:  # a star import may rebind any class defined so far
            events.append(("bind", tuple(e[1].name for e in events if e[0] == "class")))
        events.append(("bind", tuple(names)))
    return events
