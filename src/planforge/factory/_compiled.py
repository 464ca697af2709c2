"""Read a plugin module's shape from the bytecode Python cached for it, parsing only its values.

Fresh bytecode (`_pycache.py`) proves the file compiles. Its code objects give the class
statements, their bases and every module-level binding without a parse. A metadata value is
taken from the bytecode when its source line is the plain statement formatters write
(`name = "text"`, a number, a tuple of strings), since the compiler folds expressions into
constants (`"a" + "b"`); any other value is read by `ast` from its source span (all of a file's
in one parse of a few hundred bytes), so each is what `ast.literal_eval` makes of it.

Anything outside a small common shape (a class keyword, a loop or `try` at module level,
control flow or a chained assignment in a class body, a comprehension at module level, a
condition the compiler decides) gives `None`, and the caller parses the whole file with
`_reader.read_source`. A property test holds the two readers equal. CPython 3.11 only:
bytecode changes with every release.
"""

from __future__ import annotations

import ast
import bisect
import opcode
import re
from collections.abc import Collection
from types import CodeType
from typing import Any, Final

from planforge.factory._reader import (
    DECORATED,
    NOT_LITERAL,
    SourceClass,
    SourceEvent,
    literal_value,
)

__all__ = ["read_compiled"]

Instruction = tuple[int, int, int]  # (index of its code unit, opcode, argument)

_OP: Final = opcode.opmap
_CACHE, _EXTENDED_ARG, _COPY = _OP["CACHE"], _OP["EXTENDED_ARG"], _OP["COPY"]
_LOAD_CONST, _LOAD_NAME, _LOAD_ATTR = _OP["LOAD_CONST"], _OP["LOAD_NAME"], _OP["LOAD_ATTR"]
_STORE_NAME, _DELETE_NAME = _OP["STORE_NAME"], _OP["DELETE_NAME"]
_BUILD_CLASS, _MAKE_FUNCTION = _OP["LOAD_BUILD_CLASS"], _OP["MAKE_FUNCTION"]
_PRECALL, _CALL = _OP.get("PRECALL", -1), _OP["CALL"]
_SETUP_ANNOTATIONS: Final = _OP["SETUP_ANNOTATIONS"]
_DECORATOR_CALL: Final = [(_PRECALL, 0), (_CALL, 0)]
_JUMPS: Final = frozenset(opcode.hasjrel + opcode.hasjabs)
_BACKWARD: Final = frozenset(op for op in _JUMPS if "BACKWARD" in opcode.opname[op])
_STORES: Final = frozenset([_STORE_NAME, _DELETE_NAME])
_GLOBALS: Final = frozenset([_OP["STORE_GLOBAL"], _OP["DELETE_GLOBAL"]])
# code after a `raise` is dropped by the compiler, but its bindings count for the parser
_RAISES: Final = frozenset([_OP["RAISE_VARARGS"], _OP["RERAISE"]])
_MODULE_STOPS: Final = _RAISES | _BACKWARD | {_OP["IMPORT_STAR"], _EXTENDED_ARG}
_BODY_STOPS: Final = (
    _RAISES | _JUMPS | _GLOBALS | {_OP["STORE_DEREF"], _OP["DELETE_DEREF"], _EXTENDED_ARG}
)
# after `if`, `elif` or `while`: a test the compiler decides, dropping the code it never runs
# (`if False:`, `while 0:`, `if __debug__:`); looked for after every `if` and `while` in the
# file, methods and strings included, so a few more files than need it go to the parser
_CONSTANT_TEST: Final = re.compile(
    rb"(?:[ \t(]|\\\r?\n)+(?:not(?:[ \t(]|\\\r?\n)+)*"
    rb"(?:True\b|False\b|None\b|__debug__\b|[-+~.0-9'\"(\[{]|[rRbBuUfF]{1,2}['\"])"
)
_COMPREHENSIONS: Final = frozenset(["<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"])
# the last instruction of a display, and the node its source span must parse to
_DISPLAYS: Final = {
    **dict.fromkeys(["BUILD_LIST", "LIST_EXTEND", "LIST_APPEND"], ast.List),
    **dict.fromkeys(["BUILD_TUPLE", "LIST_TO_TUPLE"], ast.Tuple),
    **dict.fromkeys(["BUILD_SET", "SET_UPDATE", "SET_ADD"], ast.Set),
    **dict.fromkeys(["BUILD_MAP", "BUILD_CONST_KEY_MAP", "DICT_UPDATE", "MAP_ADD"], ast.Dict),
}
_VALUE_NODES: Final = {_OP[name]: node for name, node in _DISPLAYS.items() if name in _OP}
# the last instruction of an expression `ast.literal_eval` never accepts (constants are folded)
_NEVER_LITERAL: Final = frozenset(
    op
    for name, op in _OP.items()
    if name.startswith(("LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD", "LOAD_CLASSDEREF", "BINARY_"))
    or name.startswith(("BUILD_SLICE", "BUILD_STRING", "FORMAT_VALUE", "IMPORT_", "UNARY_"))
    or name in ("MAKE_FUNCTION", "COMPARE_OP", "IS_OP", "CONTAINS_OP")
)
_STRING_START: Final = re.compile(rb"[ \t\x0c]*(?:[rRuU]?['\"])")
_STATEMENT_ENDS: Final = frozenset([b"#", b";", b" #", b" ;"])


class _Span:
    """A value its source text must give; `node`: the display it must be, if any."""

    __slots__ = ("name", "node", "own", "text")

    def __init__(self, own: dict[str, Any], name: str, text: bytes, node: Any) -> None:
        self.own, self.name, self.text, self.node = own, name, text, node


class _Reading:
    """One module's reading: its source lines, the wanted names, the spans left to parse."""

    __slots__ = ("lines", "spans", "wanted")

    def __init__(self, source: bytes, wanted: Collection[str]) -> None:
        self.lines, self.wanted = source.splitlines(), wanted
        self.spans: list[_Span] = []

    def written_plainly(self, line: int, name: str, value: Any) -> bool:
        """Whether the statement at `line` is `name = value` as formatters write it.

        Such text is a literal assignment, whatever the compiler folded: a string without a
        double quote or backslash in double quotes, a number or `True`, `False`, `None` as
        `repr` writes it, a tuple of such strings on one line or one item a line.
        """
        lines, kind = self.lines, type(value)
        if line < 1:
            return False
        written, target = lines[line - 1].strip(), name.encode() + b" = "
        if kind is str:  # an escape may make a lone surrogate: encoded, it matches no text
            item = value.encode("utf-8", "surrogatepass")
            return written == target + b'"' + item + b'"' and _plain_bytes(item)
        if value is None or kind in (int, float, bool):
            return written == target + repr(value).encode()
        if kind is not tuple or not value or any(type(item) is not str for item in value):
            return False
        items = [item.encode("utf-8", "surrogatepass") for item in value]
        if not _plain_bytes(b"".join(items)):
            return False
        if written != target + b"(":  # on one line
            comma = b",)" if len(items) == 1 else b")"
            return written == target + b'("' + b'", "'.join(items) + b'"' + comma
        rest = [text.strip() for text in lines[line : line + len(items) + 1]]
        return rest == [*[b'"' + item + b'",' for item in items], b")"]

    def span(self, own: dict[str, Any], name: str, position: Any, node: Any) -> bool:
        """Bind `name` to the value of the source at `position` (a display of `node`, if any).

        `False` when the span is not the whole right-hand side: the compiler folded a constant
        out of a larger expression (`"a" if True else b`, `True and "a"`).
        """
        first, last, start, end = position
        if first is None or last is None or start is None or end is None or first < 1:
            return False
        lines = self.lines
        head, tail = lines[first - 1][:start], lines[last - 1][end:]
        plain = head.endswith(b" = ") and (not tail or tail[:2] in _STATEMENT_ENDS)
        if not plain and not _whole_right_side(head, tail):
            return False
        if first == last:
            text = lines[first - 1][start:end]
        else:
            text = b"\n".join(
                [lines[first - 1][start:], *lines[first : last - 1], lines[last - 1][:end]]
            )
        self.spans.append(_Span(own, name, text, node))
        own[name] = self.spans[-1]
        return True

    def settle(self) -> bool:
        """Read every span with one parse; `False` when they do not parse as expected."""
        spans = [span for span in self.spans if span.own[span.name] is span]  # not rebound
        if not spans:
            return True
        try:
            text = b"[\n(" + b"),\n(".join(span.text for span in spans) + b")\n]"
            tree = ast.parse(text, mode="eval")
        except (SyntaxError, ValueError):
            return False
        elements = tree.body.elts if isinstance(tree.body, ast.List) else []
        if len(elements) != len(spans):
            return False
        for span, element in zip(spans, elements, strict=True):
            if span.node is not None and type(element) is not span.node:
                return False
            span.own[span.name] = literal_value(element)
        return True


def read_compiled(
    code: CodeType, source: bytes, wanted: Collection[str]
) -> list[SourceEvent] | None:
    """What `read_source` reports for this module, or `None` for the parser to read it.

    A shortcut: whatever it cannot read, or fails on, the parser reads.
    """
    try:
        return _read(code, source, wanted)
    except Exception:
        return None


def _read(code: CodeType, source: bytes, wanted: Collection[str]) -> list[SourceEvent] | None:
    second_line_end = source.find(b"\n", source.find(b"\n") + 1) if b"\n" in source else -1
    opening = source if second_line_end < 0 else source[:second_line_end]
    if source.startswith(b"\xef\xbb\xbf") or b"coding" in opening:
        return None  # a byte-order mark or a declared encoding moves the byte columns
    if code.co_exceptiontable or any(
        isinstance(c, CodeType) and c.co_name in _COMPREHENSIONS for c in code.co_consts
    ):
        return None  # a `try` or `with`; a comprehension may bind a module name with `:=`
    if b":=" in source or _decided_condition(source, code):
        return None  # code the compiler dropped may hold bindings the parser counts
    reading = _Reading(source, wanted)
    events = _module_events(code, reading)
    return events if events is not None and reading.settle() else None


def _decided_condition(source: bytes, code: CodeType) -> bool:
    """Whether some `if`, `elif` or `while` at module or class level may test a constant.

    The compiler drops the code such a test never runs, and the parser counts its bindings.
    One inside a function body binds nothing the reader reports, so it is not counted.
    """
    bodies: list[tuple[int, int]] | None = None
    for keyword in (b"if", b"while"):
        start, counted, line = source.find(keyword), 0, 1
        while start >= 0:
            if _CONSTANT_TEST.match(source, start + len(keyword)):
                bodies = _function_bodies(code) if bodies is None else bodies
                line += source.count(b"\n", counted, start)  # lines counted once a keyword
                counted = start
                if not any(first < line <= last for first, last in bodies):
                    return True
            start = source.find(keyword, start + 2)
    return False


def _function_bodies(code: CodeType) -> list[tuple[int, int]]:
    """(def line, last line with code) of the module's functions and its classes' methods.

    Code dropped at the end of a body has no line: such a body looks shorter, and an `if`
    past its end counts, which only sends the file to the parser.
    """
    found: list[tuple[int, int]] = []
    for outer in code.co_consts:
        if not isinstance(outer, CodeType):
            continue
        inner = [c for c in outer.co_consts if isinstance(c, CodeType)] if _is_class(outer) else []
        for function in [outer] if not _is_class(outer) else inner:
            lines = [line for _, _, line in function.co_lines() if line is not None]
            found.append((function.co_firstlineno, max(lines, default=0)))
    return found


def _is_class(code: CodeType) -> bool:
    """A class body: the only code that starts by setting `__module__` from `__name__`."""
    return code.co_names[:2] == ("__name__", "__module__")


def _instructions(code: CodeType) -> list[Instruction]:
    """Every instruction but inline caches (a module needing EXTENDED_ARG has none here)."""
    raw = code.co_code
    pairs = enumerate(zip(raw[0::2], raw[1::2], strict=True))
    return [(unit, op, arg) for unit, (op, arg) in pairs if op != _CACHE]


def _module_events(code: CodeType, reading: _Reading) -> list[SourceEvent] | None:
    """Module-level class statements and bindings, in order; a class in a block binds.

    Forward jumps (`if TYPE_CHECKING:`) are fine: code never runs backwards here, and a class
    statement in a block, being indented, is told from one at the top level by its column.
    """
    if not _MODULE_STOPS.isdisjoint(code.co_code[0::2]):
        return None  # EXTENDED_ARG among them: an argument past 255 (a very large module)
    found = _instructions(code)
    names, lines = code.co_names, _Lines(code)
    events: list[SourceEvent] = []
    position = 0
    while position < len(found):
        unit, op, arg = found[position]
        if op == _BUILD_CLASS:
            line = lines[unit]  # the class keyword's, not a decorator's
            built = _class_statement(code, found, position, reading, line) if line > 0 else None
            if built is None:
                return None
            position, raw = built
            statement = reading.lines[line - 1].lstrip(b"\x0c")
            top_level = statement[:1] not in (b" ", b"\t")  # a statement in a block is indented
            events.append(("class", raw) if top_level else ("bind", (raw.name,)))
            continue
        if op in _STORES or op in _GLOBALS:
            if found[position - 1][1] == _COPY:  # a chained assignment or `:=`
                return None
            events.append(("bind", (names[arg],)))
        position += 1
    return events


def _class_statement(
    code: CodeType, found: list[Instruction], position: int, reading: _Reading, line: int
) -> tuple[int, SourceClass] | None:
    """`class Name(Base, pkg.Base):`, decorated or not, from LOAD_BUILD_CLASS to its
    STORE_NAME; else `None`."""
    shape = found[position + 1 : position + 4]
    if [op for _, op, _ in shape] != [_LOAD_CONST, _MAKE_FUNCTION, _LOAD_CONST]:
        return None
    body = code.co_consts[shape[0][2]]
    if shape[1][2] != 0 or not isinstance(body, CodeType):
        return None
    names, position = code.co_names, position + 4
    bases: list[str] = []
    while position < len(found) and found[position][1] in (_LOAD_NAME, _LOAD_ATTR):
        _, op, arg = found[position]
        bases.append(names[arg] if op == _LOAD_NAME else f"{bases.pop()}.{names[arg]}")
        position += 1
    call = found[position : position + 2]
    if [op for _, op, _ in call] != [_PRECALL, _CALL] or call[0][2] != 2 + len(bases):
        return None  # class keywords, or a base that is not a dotted name
    position += 2
    decorators = 0  # each applied by a call of one argument, the class, before the store
    while [(op, arg) for _, op, arg in found[position : position + 2]] == _DECORATOR_CALL:
        decorators, position = decorators + 1, position + 2
    if position >= len(found) or found[position][1] != _STORE_NAME:
        return None
    read = _class_body(body, reading)
    if read is None:
        return None
    own, docstring = read
    flag = DECORATED if decorators else ""
    name = names[found[position][2]]
    return position + 1, SourceClass(name, tuple(bases), own, flag, docstring, line)


def _class_body(body: CodeType, reading: _Reading) -> tuple[dict[str, Any], str] | None:
    """The wanted names the body binds: each a value, a `_Span` to parse, or `NOT_LITERAL`.

    Only the stores of wanted names, and the instruction that made each value, are read.
    """
    raw, names, consts = body.co_code, body.co_names, body.co_consts
    ops, args = raw[0::2], raw[1::2]
    if body.co_exceptiontable or not _BODY_STOPS.isdisjoint(ops):
        return None
    wanted = reading.wanted
    indices = {index for index, name in enumerate(names) if name in wanted}
    stores = [unit for unit, op in enumerate(ops) if op in _STORES and args[unit] in indices]
    # the instruction that made each value: the one before, past its inline caches
    makers = [unit - 1 if ops[unit - 1] != _CACHE else _before(ops, unit) for unit in stores]
    lines = _Lines(body)
    positions: list[Any] = []
    own: dict[str, Any] = {}
    for unit, made in zip(stores, makers, strict=True):
        name, kind, arg = names[args[unit]], ops[made], args[made]
        if ops[unit] == _DELETE_NAME or kind in _NEVER_LITERAL:
            own[name] = NOT_LITERAL
        elif kind == _CALL:  # literal only as `set()`
            own[name] = set() if _empty_set(body, ops, args, made) else NOT_LITERAL
        elif kind == _LOAD_CONST and reading.written_plainly(lines[made], name, consts[arg]):
            own[name] = consts[arg]
        elif kind == _LOAD_CONST or kind in _VALUE_NODES:
            positions = positions or list(body.co_positions())
            if not reading.span(own, name, positions[made], _VALUE_NODES.get(kind)):
                return None
        else:  # a chained assignment, `:=`, unpacking: the parser decides
            return None
    return own, _docstring(body, ops, args, lines, reading)


def _before(ops: bytes, unit: int) -> int:
    unit -= 1
    while unit > 0 and ops[unit] == _CACHE:
        unit -= 1
    return unit


class _Lines:
    """The source line of a code unit, from the line table read when first asked."""

    __slots__ = ("_code", "_starts", "_table")

    def __init__(self, code: CodeType) -> None:
        self._code = code
        self._table: list[tuple[int, int, int | None]] = []
        self._starts: list[int] = []

    def __getitem__(self, unit: int) -> int:
        if not self._table:
            self._table = list(self._code.co_lines())
            self._starts = [start for start, _, _ in self._table]
        return self._table[bisect.bisect_right(self._starts, 2 * unit) - 1][2] or 0


def _empty_set(body: CodeType, ops: bytes, args: bytes, call: int) -> bool:
    """Whether the CALL at unit `call` ends `LOAD_NAME set, PRECALL 0, CALL 0`."""
    precall = _before(ops, call)
    load = _before(ops, precall)
    shape = [(ops[unit], args[unit]) for unit in (load, precall, call)]
    names = body.co_names
    return "set" in names and shape == [(_LOAD_NAME, names.index("set")), (_PRECALL, 0), (_CALL, 0)]


def _docstring(body: CodeType, ops: bytes, args: bytes, lines: _Lines, reading: _Reading) -> str:
    """A string stored to `__doc__` right after `__qualname__`, written as a statement."""
    names = body.co_names
    opening = [u for u in range(min(len(ops), 9)) if ops[u] == _STORE_NAME]
    qualname = [u for u in opening if names[args[u]] == "__qualname__"]
    load = qualname[0] + 1 if qualname else 0
    load += 1 if load and load < len(ops) and ops[load] == _SETUP_ANNOTATIONS else 0
    store = load + 1
    if not qualname or store >= len(ops) or ops[load] != _LOAD_CONST:
        return ""
    if ops[store] != _STORE_NAME or names[args[store]] != "__doc__":
        return ""
    value = body.co_consts[args[load]]
    line, store_line = lines[load], lines[store]
    if not isinstance(value, str) or line != store_line:
        return ""  # `__doc__ = (` and the string on a line of its own: an assignment
    if line >= 1 and _STRING_START.match(reading.lines[line - 1]):
        return value  # a statement that starts with a string: an assignment starts otherwise
    positions = list(body.co_positions())
    return value if positions[load] == positions[store] else ""


def _whole_right_side(head: bytes, tail: bytes) -> bool:
    """Whether a span between `head` and `tail` on its lines is all of `name = ...`."""
    head, tail = head.rstrip(), tail.lstrip()
    while head.endswith(b"(") and tail.startswith(b")"):  # parentheses around the value
        head, tail = head[:-1].rstrip(), tail[1:].lstrip()
    return (
        head.endswith(b"=")
        and not head.endswith((b"==", b"<=", b">=", b"!="))
        and (not tail or tail.startswith((b"#", b";")))
    )


def _plain_bytes(text: bytes) -> bool:
    return b'"' not in text and b"\\" not in text
