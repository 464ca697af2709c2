"""Read planner metadata (literal class attributes) from source, never by running it.

Two readers produce the same `ModuleMetadata`:

- `read_module_fast` scans the text with regular expressions. It blanks strings and comments
  into placeholders, tracks bracket depth to find real statements, and understands only the
  common shapes of a plugin file (imports, a docstring, module-level assignments and
  functions, undecorated classes whose bodies hold assignments and methods). Whenever it
  meets anything else it returns `None` instead of guessing. Its first tier reads the usual
  plugin class (docstring, plain metadata assignments, methods) with one match whose groups
  are the metadata values (`_CLASS_HEAD`); any other class body it checks whole with one pattern
  (`_CLASS_BODY`) and reads the common value shapes straight from the match. Its second tier
  walks statements one by one.
- `read_module_ast` parses with `ast`: slower (about 10x), but complete.

`read_module` tries the first and falls back to the second. Both feed one resolver, so the
rules are written once: a class's attributes come from its own body, then its bases in C3
order; `Planner` (any name or attribute ending in `Planner`) supplies the defaults; a base
that is neither `Planner` nor a class of the same module, a decorator, a class keyword, a
rebinding of the class name, or a non-literal value makes the class "not literal", and its
metadata must then come from the sandbox.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, NamedTuple

from planforge.contract import METADATA_ATTRIBUTES

__all__ = [
    "ClassMetadata",
    "ModuleMetadata",
    "binds_name",
    "read_module",
    "read_module_ast",
    "read_module_fast",
]

_ATTRIBUTES: Final = tuple(METADATA_ATTRIBUTES)
_ATTRIBUTE_SET: Final = frozenset(_ATTRIBUTES)


class _NotLiteral:
    """Marks an attribute assigned something other than a literal."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not literal>"


NOT_LITERAL: Final = _NotLiteral()


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
class ModuleMetadata:
    """The top-level classes of one module, in definition order."""

    classes: tuple[ClassMetadata, ...]

    def get(self, qualname: str) -> ClassMetadata | None:
        for cls in self.classes:
            if cls.qualname == qualname:
                return cls
        return None


class _RawClass(NamedTuple):
    name: str
    bases: tuple[str, ...]
    own: dict[str, Any]
    flag: str


_Event = tuple[str, Any]  # ("class", _RawClass) or ("bind", tuple[str, ...])

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


def _resolve(events: list[_Event]) -> ModuleMetadata:
    """Turn the module's class definitions and later bindings into `ModuleMetadata`."""
    defs: list[_RawClass] = []
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
        raw: _RawClass = payload
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
        attributes: dict[str, Any] = {}
        bad = ""
        for attribute in _ATTRIBUTES:
            for node in mro:
                if node == _PLANNER:
                    break
                if node < 0:
                    continue
                if attribute in defs[node].own:
                    value = defs[node].own[attribute]
                    if value is NOT_LITERAL:
                        bad = f"{attribute!r} in class {defs[node].name} is not a literal"
                    else:
                        attributes[attribute] = value
                    break
            if bad:
                break
        if bad:
            classes.append(ClassMetadata(raw.name, is_planner, is_base, None, bad))
        else:
            classes.append(ClassMetadata(raw.name, is_planner, is_base, attributes))
    return ModuleMetadata(tuple(classes))


def _simple_attributes(
    raw: _RawClass, kinds: tuple[int, ...]
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
    raw: _RawClass,
    defs: list[_RawClass],
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


# --- ast reader ------------------------------------------------------------------------------

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _bound_names(node: ast.AST) -> list[str]:
    """Names a statement binds in the scope it runs in (nested scopes excluded)."""
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


def _literal(node: ast.expr) -> Any:
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


def _raw_class(node: ast.ClassDef) -> _RawClass:
    own: dict[str, Any] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            value: Any = None
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    if target.id in _ATTRIBUTE_SET:
                        if value is None:
                            value = (_literal(stmt.value),)
                        own[target.id] = value[0]
                else:
                    for name in _bound_names(target):
                        if name in _ATTRIBUTE_SET:
                            own[name] = NOT_LITERAL
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.value is not None and stmt.target.id in _ATTRIBUTE_SET:
                own[stmt.target.id] = _literal(stmt.value)
        else:
            for name in _bound_names(stmt):
                if name in _ATTRIBUTE_SET:
                    own[name] = NOT_LITERAL
    flag = ""
    if node.decorator_list:
        flag = "is decorated; a decorator may change its metadata"
    elif node.keywords:
        flag = "uses class keywords (a metaclass may change its metadata)"
    bases = tuple(_dotted(base) or "<expression>" for base in node.bases)
    return _RawClass(node.name, bases, own, flag)


def read_module_ast(source: bytes | str) -> ModuleMetadata:
    """The complete reader. Raises `SyntaxError` for source Python would reject."""
    tree = ast.parse(source)
    events: list[_Event] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            events.append(("class", _raw_class(stmt)))
        else:
            names = _bound_names(stmt)
            if "*" in names:
                events.append(("bind", tuple(e[1].name for e in events if e[0] == "class")))
            events.append(("bind", tuple(names)))
    return _resolve(events)


def binds_name(source: bytes | str, name: str) -> bool:
    """Whether module-level code binds `name` other than by a plain class statement.

    Used when an entry point names something we found no class for: if the module binds the
    name some other way (an import, an assignment, a conditional class), only the sandbox can
    tell what it is.
    """
    tree = ast.parse(source)
    for stmt in tree.body:
        names = _bound_names(stmt)
        if name in names or "*" in names:
            return True
    return False


# --- fast reader -----------------------------------------------------------------------------

# Strings (triple-quoted first, backslash escapes allowed) and comments, grouped by their first
# character. Python ends a string where this does, raw or not: a backslash always carries the
# next character, a newline included. A prefix (`r`, `b`, `f`...) is taken from the code before.
_TOKENS = re.compile(
    r'("(?:""(?:[^"\\]++|\\[\s\S]|"(?!""))*+"""|(?:[^"\\\n]++|\\[\s\S])*+")'
    r"|'(?:''(?:[^'\\]++|\\[\s\S]|'(?!''))*+'''|(?:[^'\\\n]++|\\[\s\S])*+')"
    r"|#[^\n]*)"
)
_QUOTES: Final = "\"'"
_PREFIX_LETTERS: Final = "rRbBuUfF"
_PREFIX_SET: Final = frozenset(_PREFIX_LETTERS)
_LAST_CHARACTER: Final = itemgetter(-1)
_PREFIXES: Final = frozenset(("r", "u", "b", "f", "rb", "br", "fr", "rf"))
# The escapes the fast reader lets through. Any other (`\N{...}`, `\U...`, an unknown or an
# out-of-range one) may warn or fail in Python, so `ast` reads such a module.
_BYTES_ESCAPE = r"\\(?:[\n\\'\"abfnrtv]|x[0-9a-fA-F]{2}|[0-3][0-7]{0,2}|[4-7][0-7]?(?![0-7]))"
_BYTES_ESCAPES = re.compile(_BYTES_ESCAPE)
_STR_ESCAPES = re.compile(rf"{_BYTES_ESCAPE}|\\u[0-9a-fA-F]{{4}}")
# Python 3.12 lets an f-string's fields hold any expression, quotes and comments included,
# which this tokenizer cannot follow: there an f-string with a field is left to `ast`.
_NESTED_FSTRINGS: Final = sys.version_info >= (3, 12)
_LINES = re.compile(r"^(?: {4}| {0,3})(?=[^ \n])", re.MULTILINE)
_CLASS = re.compile(r"class[ ]+([A-Za-z_]\w*)[ ]*(?:\(([^()]*)\))?[ ]*:[ ]*(\x00?)[ ]*(?:\n|$)")
_DEF = re.compile(r"(?:async[ ]+)?def[ ]+([A-Za-z_]\w*)")
_ASSIGN = re.compile(r"([A-Za-z_]\w*)[ ]*(?::[^=\n]*?)?(?<![=!<>])=(?!=)\s*")
_ANNOTATION_ONLY = re.compile(r"([A-Za-z_]\w*)[ ]*:[^=\n]*\s*$")
_BARE_EQUALS = re.compile(r"(?<![=!<>])=(?!=)")
_DOTTED = re.compile(r"\s*([A-Za-z_][\w.]*?)\s*")
_PLACEHOLDERS_ONLY = re.compile(r"[\x00\s]*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"-?(?:(\d+)(?:(\.)\d*)?|(\.)\d+)(?:([eE])[-+]?\d+)?")
_ELEMENT = re.compile(r"\s*(?:(\x00)|(True|False|None)(?!\w)|(-?[\d.])|([(\[])|([)\]])|(,))")
_IMPORT = re.compile(r"(?:import|from)[ ]")
_STRING_SEQUENCE = re.compile(
    r"\((?:\s*\x00\s*,)*\s*(?:\x00\s*)?\)|\[(?:\s*\x00\s*,)*\s*(?:\x00\s*)?\]"
)
_NO_SCALAR: Final = object()


def _flat(code: str) -> str:
    """`code` with every bracket written as a parenthesis, so one count tracks the depth.

    Four `replace` calls beat a `translate` table by about ten times on plugin-sized text.
    """
    return code.replace("[", "(").replace("{", "(").replace("]", ")").replace("}", ")")


class _Unsure(Exception):
    """The fast reader met a shape it does not handle; the caller falls back to `ast`."""


@dataclass(frozen=True, slots=True)
class _Escaped:
    """A string token Python must decode itself: it has a prefix or a backslash escape.

    Kept as written until a metadata value needs it, since most such strings (docstrings,
    regular expressions) are never read.
    """

    token: str
    prefix: str  # lower case

    def value(self) -> Any:
        """Its value as `ast.literal_eval` gives it; an f-string is not a literal there."""
        if "f" in self.prefix:
            return NOT_LITERAL
        try:
            return ast.literal_eval(self.token)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise _Unsure from None


def _escaped(token: str) -> _Escaped:
    """Wrap a prefixed or escaped token, or raise `_Unsure` if Python might warn or fail."""
    prefix = token[: len(token) - len(token.lstrip(_PREFIX_LETTERS))].lower()
    if "\\" in token and "r" not in prefix:
        escapes = _BYTES_ESCAPES if "b" in prefix else _STR_ESCAPES
        if "\\" in escapes.sub("", token):
            raise _Unsure
    if "b" in prefix and not token.isascii():
        raise _Unsure  # Python rejects a bytes literal holding other characters
    if _NESTED_FSTRINGS and "f" in prefix and "{" in token:
        raise _Unsure  # a field may hold a quote that ended this token too early
    return _Escaped(token, prefix)


def _string(value: Any) -> Any:
    """A placeholder's value: decoded by Python when the token has a prefix or an escape."""
    return value.value() if type(value) is _Escaped else value


def _strings(items: list[Any]) -> list[Any] | None:
    """The placeholders' values, or `None` when one is not a literal (an f-string)."""
    if _Escaped not in map(type, items):
        return items
    decoded = [_string(item) for item in items]
    return None if any(item is NOT_LITERAL for item in decoded) else decoded


class _Text:
    """The source as code with comments removed and `\\x00` for each string, plus the values.

    `values` holds each string's contents, or an `_Escaped` token when Python must decode it,
    in order: the placeholder count before a position is the index of the next one.
    """

    __slots__ = ("code", "values")

    def __init__(self, text: str) -> None:
        self.code, self.values = _split_double_quoted(text) or _split_tokens(text)

    def token_index(self, position: int) -> int:
        return self.code.count("\x00", 0, position)


def _split_tokens(text: str) -> tuple[str, list[Any]]:
    parts = _TOKENS.split(text)
    if _ends_with_prefix_letter(parts[0:-1:2]):
        _move_prefixes(parts)
    tokens = parts[1::2]
    if "#" in text and any(token[0] == "#" for token in tokens):
        parts[1::2] = ["" if token[0] == "#" else "\x00" for token in tokens]
        code = "".join(parts)
        tokens = [token for token in tokens if token[0] != "#"]
    else:
        code = "\x00".join(parts[0::2])
    if "\\" in code or '"' in code or "'" in code:
        raise _Unsure  # a line continuation or another backslash outside strings, a stray quote
    values: list[Any] = [
        (token[3:-3] if token[:3] in _TRIPLE_QUOTES else token[1:-1])
        if token[0] in _QUOTES and "\\" not in token
        else _escaped(token)
        for token in tokens
    ]
    return code, values


def _ends_with_prefix_letter(pieces: list[str]) -> bool:
    """Whether a piece of code (each followed by a token) may end with a string prefix."""
    try:
        return not _PREFIX_SET.isdisjoint(map(_LAST_CHARACTER, pieces))
    except IndexError:  # an empty piece: two tokens side by side
        return not _PREFIX_SET.isdisjoint([piece[-1:] for piece in pieces])


def _move_prefixes(parts: list[str]) -> None:
    """Move each string prefix (`r`, `b`, `f`...) from the code before it into its token."""
    tails = [part[-1:] for part in parts[0:-1:2]]
    for index in [index for index, tail in enumerate(tails) if tail in _PREFIX_SET]:
        token = parts[2 * index + 1]
        prefix = "" if token[0] == "#" else _prefix(parts[2 * index])
        if prefix:
            parts[2 * index] = parts[2 * index][: -len(prefix)]
            parts[2 * index + 1] = prefix + token


def _prefix(before: str) -> str:
    """The string prefix that ends the code `before` a string, or "" if there is none.

    Letters that end a longer name are no prefix: `if"x"` is `if` and a string.
    """
    stem = before.rstrip(_PREFIX_LETTERS)
    letters = before[len(stem) :]
    if letters.lower() not in _PREFIXES or stem[-1:].isalnum() or stem[-1:] == "_":
        return ""
    return letters


def _split_double_quoted(text: str) -> tuple[str, list[Any]] | None:
    """`_Text`'s split by `str.split` alone, for the common file without `'` or `#` in code.

    Splitting on `\"\"\"` first finds the triple-quoted strings as the tokenizer does: a
    code segment holds no `\"\"\"`, so none of its quotes opens one, and with an even
    number of quotes each pair is one single-line string. A `'` or `#` left in the code
    could hide a quote from this reading; then the regular expression decides. So does a
    backslash (an escape, or a continuation line).
    """
    if "\\" in text:
        return None
    outer = text.split('"""')
    if not len(outer) & 1:
        return None  # an unterminated triple-quoted string
    values: list[Any] = []
    codes: list[str] = []  # joined by placeholders: the segments' own and the triple strings'
    single: list[str] = []
    triples: list[int] = []  # which values were triple-quoted
    last = len(outer) - 1
    for position in range(0, len(outer), 2):
        segment = outer[position]
        if '"' in segment:
            pieces = segment.split('"')
            if not len(pieces) & 1:
                return None
            strings = pieces[1::2]
            single += strings
            values += strings
            codes += pieces[0::2]
        else:
            codes.append(segment)
        if position != last:
            triples.append(len(values))
            values.append(outer[position + 1])
    code = "\x00".join(codes)
    if "'" in code or "#" in code or "\n" in "".join(single):
        return None
    if _ends_with_prefix_letter(codes[:-1]):
        tails = [piece[-1:] for piece in codes[:-1]]
        for index in [index for index, tail in enumerate(tails) if tail in _PREFIX_SET]:
            prefix = _prefix(codes[index])
            if prefix:
                codes[index] = codes[index][: -len(prefix)]
                quote = '"""' if index in triples else '"'
                values[index] = _escaped(f"{prefix}{quote}{values[index]}{quote}")
        code = "\x00".join(codes)
    return code, values


def _number(code: str, position: int) -> tuple[Any, int]:
    match = _NUMBER.match(code, position)
    if match is None:
        raise _Unsure
    end = match.end()
    if end < len(code) and (code[end].isalnum() or code[end] in "._"):
        raise _Unsure
    text = match.group()
    if match.group(2) or match.group(3) or match.group(4):
        return float(text), end
    digits = match.group(1)
    if len(digits) > 1 and digits[0] == "0":
        raise _Unsure
    return int(text), end


def _skip_space(code: str, position: int) -> int:
    while position < len(code) and code[position] in " \n":
        position += 1
    return position


_SCALARS: Final = {"True": True, "False": False, "None": None}
_TRIPLE_QUOTES: Final = ('"""', "'''")


def _value(text: _Text, start: int, end: int, index: int) -> Any:
    """Parse the literal in `code[start:end]` (a whole statement tail) or raise `_Unsure`.

    `index` is the number of string placeholders before `start`.
    """
    code = text.code
    tail = code[start:end].rstrip()
    if tail == "\x00":
        return _string(text.values[index])
    if _STRING_SEQUENCE.fullmatch(tail):
        count = tail.count("\x00")
        items = _strings(text.values[index : index + count])
        if items is None:
            return NOT_LITERAL
        if tail[0] == "[":
            return items
        if count == 1 and "," not in tail:
            return items[0]
        return tuple(items)
    scalar = _SCALARS.get(tail, _NO_SCALAR)
    if scalar is not _NO_SCALAR:
        return scalar
    first = tail[:1]
    if first in ("(", "["):
        value, position, index = _bracket(text, start, index)
    elif first == "-" or first.isdigit():
        value, position = _number(code, start)
    else:
        word = _IDENTIFIER.match(code, start)
        if word is None:
            raise _Unsure
        name = word.group()
        after = word.end()
        if name in _SCALARS or name == "set" or (after < end and code[after] == "\x00"):
            raise _Unsure
        if _BARE_EQUALS.search(tail):
            raise _Unsure
        return NOT_LITERAL
    if _skip_space(code, position) < end:
        raise _Unsure
    return value


def _bracket(text: _Text, start: int, index: int) -> tuple[Any, int, int]:
    code = text.code
    opener = code[start]
    closer = ")" if opener == "(" else "]"
    items: list[Any] = []
    commas = 0
    literal = True
    expect_item = True
    position = start + 1
    while True:
        position = _skip_space(code, position)
        match = _ELEMENT.match(code, position)
        if match is None:
            raise _Unsure
        kind = match.lastindex
        if kind == 5:
            if match.group(5) != closer:
                raise _Unsure
            position = match.end()
            break
        if kind == 6:
            if expect_item:
                raise _Unsure
            commas += 1
            expect_item = True
            position = match.end()
            continue
        if not expect_item or kind == 4:
            raise _Unsure
        if kind == 1:
            item = _string(text.values[index])
            literal = literal and item is not NOT_LITERAL
            items.append(item)
            index += 1
            position = match.end()
        elif kind == 2:
            items.append({"True": True, "False": False, "None": None}[match.group(2)])
            position = match.end()
        else:
            number, position = _number(code, match.start(3))
            items.append(number)
        expect_item = False
    if not literal:
        return NOT_LITERAL, position, index
    if opener == "[":
        return items, position, index
    if len(items) == 1 and commas == 0:
        return items[0], position, index
    return tuple(items), position, index


def read_module_fast(source: bytes | str) -> ModuleMetadata | None:
    """The fast reader: the same answer as `read_module_ast`, or `None` when unsure."""
    if isinstance(source, bytes):
        if source.startswith(b"\xef\xbb\xbf") or b"coding" in b"".join(source.split(b"\n", 2)[:2]):
            return None
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if "\r" in source or "\x00" in source:
        return None
    try:
        text = _Text("\n" + source + "\n")
    except _Unsure:
        return None
    try:
        return _scan_quick(text)
    except _Unsure:
        pass
    try:
        return _scan(text)
    except _Unsure:
        return None


def _scan(text: _Text) -> ModuleMetadata:
    code = text.code
    if "\t" in code or ";" in code or "\f" in code or "\v" in code:
        raise _Unsure
    flat = _flat(code)
    starts: list[int] = []
    indents: list[bool] = []
    depth = 0
    previous = 0
    for match in _LINES.finditer(code):
        position = match.start()
        depth += flat.count("(", previous, position) - flat.count(")", previous, position)
        previous = position
        if depth:
            continue
        indent = match.end() - position
        if indent not in (0, 4):
            raise _Unsure
        starts.append(position)
        indents.append(indent == 4)
    starts.append(len(code))
    events: list[_Event] = []
    seen_class = False
    names: set[str] = set()
    count = len(starts) - 1
    line = 0
    while line < count:
        start, end = starts[line], starts[line + 1]
        if indents[line]:
            line += 1  # a body line of a top-level function
            continue
        statement = code[start:end]
        if statement.startswith("class "):
            header = _CLASS.match(code, start)
            if header is None:
                raise _Unsure
            if header.group(3):
                raise _Unsure
            name = header.group(1)
            if name in names:
                raise _Unsure
            names.add(name)
            seen_class = True
            bases = _bases(header.group(2))
            body_end = line + 1
            while body_end < count and indents[body_end]:
                body_end += 1
            if body_end == line + 1:
                raise _Unsure
            own = _class_body(text, starts, line + 1, body_end)
            events.append(("class", _RawClass(name, bases, own, "")))
            line = body_end
            continue
        line += 1
        if _PLACEHOLDERS_ONLY.fullmatch(statement):
            continue
        if _IMPORT.match(statement):
            if seen_class or "*" in statement:
                raise _Unsure
            continue
        definition = _DEF.match(statement)
        if definition is not None:
            events.append(("bind", (definition.group(1),)))
            continue
        assign = _ASSIGN.match(statement)
        if assign is not None and not keyword.iskeyword(assign.group(1)):
            if _BARE_EQUALS.search(statement, assign.end()):
                raise _Unsure
            events.append(("bind", (assign.group(1),)))
            continue
        if _annotation_only(statement):
            continue
        raise _Unsure
    return _resolve(events)


def _trie(words: list[str]) -> str:
    """An alternation of `words` grouped by first letter, so a mismatch fails in one step."""
    heads: dict[str, list[str]] = {}
    for word in sorted(words, key=lambda w: (-len(w), w)):
        heads.setdefault(word[0], []).append(re.escape(word[1:]))
    return "|".join(
        f"{re.escape(head)}(?:{'|'.join(tails)})" for head, tails in sorted(heads.items())
    )


_KEYWORDS = rf"(?:{_trie([*keyword.kwlist, *keyword.softkwlist])})\b"
_META_NAMES = _trie(list(_ATTRIBUTES))
_TOP = re.compile(r"\n(?=[^ \n])")
_LINE_START = re.compile(r"\n(?: {4}| {0,3})(?=[^ \n])")
_CLASS_QUICK = re.compile(r"\nclass[ ]+([A-Za-z_]\w*)[ ]*(?:\(([^()]*)\))?[ ]*:[ ]*(?=\n)")
_PLANNER_BASES: Final = ("Planner",)


def _group(depth: int, run: str, newline: str) -> str:
    """A balanced bracket group of the flat text (all brackets are `(`), `depth` levels deep.

    `run` matches what may stand between brackets, `newline` what may follow a line break.
    """
    inner = f"{run}|{newline}" if newline else run
    group = rf"\((?:{inner})*+\)"
    for _ in range(depth - 1):
        group = rf"\((?:{inner}|{group})*+\)"
    return group


# Inside brackets a line may start with 5+ spaces, be blank, or close a bracket; so a line of
# exactly four spaces and a name is always a class-level statement, never a continuation.
_IN_GROUP_BREAK = r"\n(?:[ ]{5}|[ ]*(?=\n)|[ ]{0,4}(?=\)))"
_ANY_RUN = r"[^()\n]++"
_NO_BARE_EQUALS_RUN = r"[^()\n=]++|(?<=[<>!=])=|=(?==)"  # `==` and `<=` yes, `=` no
_NOT_EQUALS_RUN = r"[^()\n=]++"
_LINE = rf"(?:{_ANY_RUN}|{_group(5, _ANY_RUN, _IN_GROUP_BREAK)})*+"
_VALUE_LINE = rf"(?:{_NO_BARE_EQUALS_RUN}|{_group(5, _NO_BARE_EQUALS_RUN, _IN_GROUP_BREAK)})*+"
_ANNOTATION = rf":(?:{_NOT_EQUALS_RUN}|{_group(3, _NOT_EQUALS_RUN, '')})*+"
_EOL = r"(?=\n|\Z)"
_BLANK = rf"[ ]*{_EOL}"
_NAME = rf"(?!{_KEYWORDS})[A-Za-z_]\w*[ ]*"
_BODY_ITEM = (  # the common kinds first: the engine tries them in order
    r"    (?:"
    rf"{_NAME}(?:{_ANNOTATION})?=(?!=){_VALUE_LINE}{_EOL}"  # one target, no chained `=`
    rf"|\x00(?:[ ]*\x00)*+[ ]*{_EOL}"  # a docstring
    rf"|(?:@{_LINE}\n    )*+(?:async[ ]+)?def[ ]+(?!(?:{_META_NAMES})\b)[A-Za-z_]{_LINE}"
    rf"(?:\n(?:[ ]{{5}}{_LINE}|{_BLANK}))*+"  # a method and its body
    rf"|(?:pass|\.\.\.)[ ]*{_EOL}"
    rf"|{_NAME}{_ANNOTATION}{_EOL}"  # a bare annotation binds nothing
    r")"
)
_CLASS_BODY = re.compile(rf"(?:\n{_BLANK})*+\n{_BODY_ITEM}(?:\n(?:{_BODY_ITEM}|{_BLANK}))*+")
# Once the methods start, a class body is usually methods alone: then only lines indented by
# one to four spaces matter, and each must open a method (a `def` cannot continue a bracket,
# so such a line is a class-level statement) not named after an attribute, or close a bracket
# (which no statement starts with). A method body holds no class-level statement, whatever its
# brackets do. Anything else here (a decorator, an assignment, another continuation line)
# sends the whole body through `_CLASS_BODY`.
_AFTER_METHODS = re.compile(
    r"\n(?:[ ]{1,3}[^ \n)]"
    rf"|[ ]{{4}}(?![ \n)]|(?:async[ ]+)?def[ ]+(?!(?:{_META_NAMES})\b)[A-Za-z_]))"
)
_META_VALUE = re.compile(
    rf"\n    ({_META_NAMES})[ ]*(?::[^=\n]*)?=(?!=)[ ]*()"
    r"(?:(?:(\x00)"
    r"|(True|False|None)"
    r"|(-?(?:0|[1-9]\d*))"
    r"|(-?(?:0|[1-9]\d*)\.\d+)"
    r"|(\((?:[ \n]*\x00[ \n]*,)*+[ \n]*(?:\x00[ \n]*)?\))"
    r"|(\[(?:[ \n]*\x00[ \n]*,)*+[ \n]*(?:\x00[ \n]*)?\])"
    r")(?=[ ]*\n))?"
)
_STRING_TOKEN, _SCALAR_TOKEN, _INT_TOKEN, _FLOAT_TOKEN, _TUPLE_TOKEN, _LIST_TOKEN = range(3, 9)
_COLLECTION_TOKENS: Final = frozenset((_TUPLE_TOKEN, _LIST_TOKEN))

# The quickest step of the first tier reads a class whose body holds only its docstring,
# metadata assignments of the expected shape (a string, a tuple or list of strings, a flag, a
# number), other one-line assignments that cannot bind a second name, and then methods. One
# match leaves the metadata values in its groups, in `_ATTRIBUTES` order (a repeated group keeps
# its last capture, as the class keeps its last assignment). Each line must be taken whole:
# the pattern checks no line ends, so a line it reads only in part (`name = "a" + b`) leaves
# the match in mid-line, and the caller, finding no method or class end there, steps aside.
# Telling strings apart needs each placeholder to say which string it is, so this step runs
# on `_marked` code, where string i is the character `chr(_MARK + i)`; that code exists only
# when the code outside strings is ASCII, so nothing else falls in the placeholder range.
_MARK: Final = 0x100
_MARK_LIMIT: Final = 0xD800 - _MARK  # the marks stay below the surrogates
_MARKED = r"[\u0100-\ud7ff]"
_HEAD_SHAPES: Final = {
    str: rf"({_MARKED})",
    tuple: (
        rf"(\((?:[ \n]*{_MARKED}[ \n]*,)*+[ \n]*(?:{_MARKED}[ \n]*)?\)"
        rf"|\[(?:[ \n]*{_MARKED}[ \n]*,)*+[ \n]*(?:{_MARKED}[ \n]*)?\])"
    ),
    bool: r"(True|False)",
    type(None): r"(-?(?:0|[1-9]\d*)(?:\.\d+)?)",
}
_HEAD_KINDS: Final = tuple(type(default) for default in METADATA_ATTRIBUTES.values())
_CLASS_HEAD = re.compile(
    r"(?:\n(?:    (?:"  # a literal first character lets the engine skip a branch at once
    + "|".join(
        rf"{name}[ ]*=[ ]*{_HEAD_SHAPES[kind]}"
        for name, kind in zip(_ATTRIBUTES, _HEAD_KINDS, strict=True)
    )
    + rf"|{_MARKED}(?:[ ]*{_MARKED})*+"  # a docstring
    # another name bound on one line: no bracket, so no second target or comprehension
    + rf"|(?!(?:{_META_NAMES})\b){_NAME}=(?!=)[^\n()\[\]{{}}=]*"
    + r")[ ]*|[ ]*(?=\n|\Z)))*+"  # ... or a blank line
)
_MARKS: list[str] = []
# Lines the first tier's statement loop would pass over: placeholders only (a docstring) and
# imports on one line, neither starred nor bracketed. The match ends where one is not whole.
_PRELUDE = re.compile(r"(?:\n(?:[\x00 ]*|(?:import|from)[ ][^\n*()]*)(?=\n))*+")
_METHOD_STARTS: Final = ("\n    def ", "\n    async def ")


def _marked(code: str, count: int) -> str | None:
    """`code` with string i as `chr(_MARK + i)`, or `None` when that would be ambiguous
    (code outside strings that is not ASCII, or too many strings)."""
    global _MARKS
    if count > _MARK_LIMIT or not code.isascii():
        return None
    marks = _MARKS
    if len(marks) < count:
        # a new list, whole, never extended in place: a thread reading the old one (or
        # building its own at the same time) still holds a correct list of its own
        marks = [chr(_MARK + i) for i in range(min(max(count, 2 * len(marks)), _MARK_LIMIT))]
        _MARKS = marks
    pieces = code.split("\x00")
    joined = [""] * (2 * count + 1)
    joined[0::2] = pieces
    joined[1::2] = marks[:count]
    return "".join(joined)


def _fields_of(kind: type) -> tuple[tuple[int, str], ...]:
    return tuple(
        (index, name)
        for index, (name, head_kind) in enumerate(zip(_ATTRIBUTES, _HEAD_KINDS, strict=True))
        if head_kind is kind
    )


_HEAD_STRINGS: Final = _fields_of(str)
_HEAD_COLLECTIONS: Final = _fields_of(tuple)
_HEAD_FLAGS: Final = _fields_of(bool)
_HEAD_NUMBERS: Final = _fields_of(type(None))


def _head_values(groups: tuple[str | None, ...], values: list[Any]) -> dict[str, Any]:
    """The metadata a `_CLASS_HEAD` match holds; the mark `chr(_MARK + i)` is `values[i]`.

    A bracket holds one mark per item and nothing else but commas and blanks, so its items
    are consecutive strings of the source: the slice between its first and last mark.
    """
    own: dict[str, Any] = {}
    for index, name in _HEAD_STRINGS:
        raw = groups[index]
        if raw is not None:
            own[name] = values[ord(raw) - _MARK]
    for index, name in _HEAD_COLLECTIONS:
        raw = groups[index]
        if raw is not None:
            inner = raw[1:-1].strip(" \n,")
            items = values[ord(inner[0]) - _MARK : ord(inner[-1]) - _MARK + 1] if inner else []
            if raw[0] == "[":
                own[name] = items
            elif len(items) == 1 and "," not in raw:
                own[name] = items[0]
            else:
                own[name] = tuple(items)
    for index, name in _HEAD_FLAGS:
        raw = groups[index]
        if raw is not None:
            own[name] = raw == "True"
    for index, name in _HEAD_NUMBERS:
        raw = groups[index]
        if raw is not None:
            own[name] = float(raw) if "." in raw else int(raw)
    return own


def _class_head(
    marked: str, flat: str, body: int, end: int, values: list[Any], escaped: bool
) -> dict[str, Any] | None:
    """A class body's metadata by the class-head step, or `None` where it must step aside.

    The step has read the whole body when its match ends at the class's end, having read
    more than blank lines, or where the methods start with nothing but methods after them.
    """
    head = _CLASS_HEAD.match(marked, body, end)
    if head is None:  # never: every part of the pattern is optional
        return None
    rest = head.end()
    if rest == end:
        if rest == body or marked[body:rest].isspace():
            return None  # no body at all: Python rejects the class
    elif not marked.startswith(_METHOD_STARTS, rest) or _AFTER_METHODS.search(flat, rest, end):
        return None
    own = _head_values(head.groups(), values)
    return _decoded(own) if escaped else own


def _decoded(own: dict[str, Any]) -> dict[str, Any]:
    """`own` with every `_Escaped` string decoded, as Python reads it."""
    for name, value in own.items():
        if type(value) is _Escaped:
            own[name] = value.value()
        elif type(value) in (tuple, list) and _Escaped in map(type, value):
            items = _strings(list(value))
            own[name] = NOT_LITERAL if items is None else type(value)(items)
    return own


def _statement_end(code: str, flat: str, position: int) -> int:
    """Where the statement holding `position` (at bracket depth 0) ends."""
    depth = 0
    previous = position
    for match in _LINE_START.finditer(code, position):
        start = match.start()
        depth += flat.count("(", previous, start) - flat.count(")", previous, start)
        previous = start
        if depth <= 0:
            return start
    return len(code)


def _scan_quick(text: _Text) -> ModuleMetadata:
    """The common shape in a few regex passes; raises `_Unsure` for anything else.

    Each class body must match `_CLASS_BODY` as a whole: that check knows where every
    class-level statement starts, so the metadata assignments are then found by one search
    whose value shapes (strings, numbers, flags, tuples and lists of strings) are captured by
    the pattern itself; anything else goes through `_value`. A class body indented other than
    by four spaces fails `_CLASS_BODY`, so odd indentation needs no separate check. When the
    methods come last and hold no class-level surprise (`_AFTER_METHODS`), only the part
    before them goes through `_CLASS_BODY` and the search: method bodies are not walked.
    """
    code = text.code
    if "\t" in code or ";" in code or "\f" in code or "\v" in code or ":=" in code:
        raise _Unsure
    flat = _flat(code)
    values = text.values
    marked = _marked(code, len(values))
    if marked is not None:
        escaped = _Escaped in map(type, values)
    tops: list[int] = []
    depth = 0
    previous = 0
    count = flat.count
    for match in _TOP.finditer(code):
        position = match.start()
        depth += count("(", previous, position) - count(")", previous, position)
        previous = position
        if not depth:
            tops.append(position)
    size = len(code)
    tops.append(size)
    events: list[_Event] = []
    classes: list[_RawClass] = []
    names: set[str] = set()
    bound: set[str] = set()
    simple = True  # every class derives from `Planner` alone and every value is literal
    seen_class = False
    counted = 0  # placeholders are counted up to this position ...
    index = 0  # ... and this many were found
    # the module's opening lines (docstring, one-line imports) bind nothing we track
    first = bisect_right(tops, _PRELUDE.match(code).end()) - 1  # type: ignore[union-attr]
    for number in range(max(first, 0), len(tops) - 1):
        start, end = tops[number], tops[number + 1]
        header = _CLASS_QUICK.match(code, start, end)
        if header is None:
            statement = code[start + 1 : end]
            if statement.startswith("class"):
                raise _Unsure
            if _PLACEHOLDERS_ONLY.fullmatch(statement):
                continue
            if _IMPORT.match(statement):
                if seen_class or "*" in statement:
                    raise _Unsure
                continue
            definition = _DEF.match(statement)
            if definition is not None:
                bound.add(definition.group(1))
                events.append(("bind", (definition.group(1),)))
                continue
            assign = _ASSIGN.match(statement)
            if assign is not None and not keyword.iskeyword(assign.group(1)):
                if _BARE_EQUALS.search(statement, assign.end()):
                    raise _Unsure
                bound.add(assign.group(1))
                events.append(("bind", (assign.group(1),)))
                continue
            if _annotation_only(statement):
                continue
            raise _Unsure
        name, base_text = header.groups()
        if name in names:
            raise _Unsure
        bases = _bases(base_text)
        if bases is not _PLANNER_BASES or "Planner" in names:
            simple = False
        names.add(name)
        seen_class = True
        body = header.end()
        if marked is not None:
            head = _class_head(marked, flat, body, end, values, escaped)
            if head is not None:
                if NOT_LITERAL in head.values():
                    simple = False
                raw = _RawClass(name, bases, head, "")
                classes.append(raw)
                events.append(("class", raw))
                continue
        stop = code.find("\n    def ", body, end)  # where the methods start, usually
        if stop < 0 or _AFTER_METHODS.search(flat, stop, end) is not None:
            stop = end
            if _CLASS_BODY.fullmatch(flat, body, end) is None:
                raise _Unsure
        elif stop > body and _CLASS_BODY.fullmatch(flat, body, stop) is None:
            raise _Unsure
        own: dict[str, Any] = {}
        for match in _META_VALUE.finditer(code, body, stop + 1 if stop < size else stop):
            shape = match.lastindex
            if shape == _STRING_TOKEN:
                position = match.start(2)
                index += code.count("\x00", counted, position)
                counted = position
                value: Any = values[index]
                if type(value) is _Escaped:
                    value = value.value()
            elif shape in _COLLECTION_TOKENS:
                position = match.start(2)
                index += code.count("\x00", counted, position)
                counted = position
                group = match.group(shape)
                items = values[index : index + group.count("\x00")]
                decoded = _strings(items) if _Escaped in map(type, items) else items
                if decoded is None:
                    value = NOT_LITERAL
                elif shape == _LIST_TOKEN:
                    value = decoded
                elif len(decoded) == 1 and "," not in group:
                    value = decoded[0]
                else:
                    value = tuple(decoded)
            elif shape == _SCALAR_TOKEN:
                value = _SCALARS[match.group(shape)]
            elif shape == _FLOAT_TOKEN:
                value = float(match.group(shape))
            elif shape == _INT_TOKEN:
                value = int(match.group(shape))
            else:
                position = match.start(2)
                index += code.count("\x00", counted, position)
                counted = position
                value = _value(text, position, _statement_end(code, flat, position), index)
            if value is NOT_LITERAL:
                simple = False
            own[match.group(1)] = value
        raw = _RawClass(name, bases, own, "")
        classes.append(raw)
        events.append(("class", raw))
    if simple and names.isdisjoint(bound):
        # nothing to resolve: no same-module bases, no rebinding, every value literal
        return ModuleMetadata(
            tuple([ClassMetadata(raw.name, True, False, raw.own) for raw in classes])
        )
    return _resolve(events)


def _annotation_only(statement: str) -> bool:
    match = _ANNOTATION_ONLY.match(statement)
    return match is not None and not keyword.iskeyword(match.group(1))


def _bases(text: str | None) -> tuple[str, ...]:
    if text == "Planner":
        return _PLANNER_BASES
    if text is None or not text.strip():
        return ()
    parts = text.split(",")
    if not parts[-1].strip():
        parts.pop()
    bases: list[str] = []
    for part in parts:
        match = _DOTTED.fullmatch(part)
        if match is None or match.group(1).endswith(".") or ".." in match.group(1):
            raise _Unsure
        bases.append(match.group(1))
    return tuple(bases)


def _class_body(text: _Text, starts: list[int], first: int, stop: int) -> dict[str, Any]:
    code = text.code
    own: dict[str, Any] = {}
    index = -1
    counted = 0
    for line in range(first, stop):
        start, end = starts[line] + 4, starts[line + 1]
        statement = code[start:end]
        if _PLACEHOLDERS_ONLY.fullmatch(statement):
            continue
        definition = _DEF.match(statement)
        if definition is not None:
            if definition.group(1) in _ATTRIBUTE_SET:
                own[definition.group(1)] = NOT_LITERAL
            continue
        if statement[0] == "@":
            continue  # a method decorator; the decorated def is checked on its own line
        assign = _ASSIGN.match(statement)
        if assign is not None and not keyword.iskeyword(assign.group(1)):
            name = assign.group(1)
            if name in _ATTRIBUTE_SET:
                value_start = start + assign.end()
                if index < 0:
                    index = text.token_index(value_start)
                else:
                    index += code.count("\x00", counted, value_start)
                counted = value_start
                own[name] = _value(text, value_start, end, index)
            elif _BARE_EQUALS.search(statement, assign.end()):
                raise _Unsure
            continue
        if _annotation_only(statement):
            continue
        if statement.rstrip() in ("pass", "..."):
            continue
        raise _Unsure
    return own


def read_module(source: bytes | str) -> tuple[ModuleMetadata, str]:
    """Read a module's classes; returns the metadata and which reader produced it.

    Raises `SyntaxError` when the fast reader is unsure and `ast` rejects the source.
    """
    fast = read_module_fast(source)
    if fast is not None:
        return fast, "fast"
    return read_module_ast(source), "ast"
