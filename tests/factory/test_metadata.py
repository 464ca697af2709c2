"""The metadata reader: one standard parser, values exactly as `ast.literal_eval` reads them."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planforge.contract import METADATA_ATTRIBUTES
from planforge.factory._metadata import ModuleClasses, read_module
from planforge.factory._planners import binds_name


def both(source: str) -> ModuleClasses:
    """Read a dedented source (the name stays from the days of two readers)."""
    return read_module(textwrap.dedent(source))


def test_every_attribute_plain_and_annotated() -> None:
    meta = both(
        '''
        """Doc with class Fake(Planner): name = "no" inside."""
        from typing import ClassVar
        from planforge.contract import Planner

        class Full(Planner):
            """Docstring.

            name = "not this one"
            """
            name = "full"  # a comment
            version: ClassVar[str] = "2.0.0"
            capabilities = ("a", "b")
            tags: tuple[str, ...] = (
                "x",  # why
                'y',
            )
            tier = "vip"
            production_ready = True
            reliability_score = 0.5
            description = """multi
        line"""
            keywords = ["k"]
            stateful = None
            context_kind: str = "portfolio"
            other = compute()

            def plan(self, objective, context):
                return self.new_plan(
            name = "inside a call",
                )
        '''
    )
    (cls,) = meta.classes
    assert cls.is_planner
    assert cls.attributes == {
        "name": "full",
        "version": "2.0.0",
        "capabilities": ("a", "b"),
        "tags": ("x", "y"),
        "tier": "vip",
        "production_ready": True,
        "reliability_score": 0.5,
        "description": "multi\nline",
        "keywords": ["k"],
        "stateful": None,
        "context_kind": "portfolio",
    }


@pytest.mark.parametrize(
    "body",
    [
        '    name = "p"\n    context_kind = "portfolio"\n',
        '    name = "p"\n    context_kind: str = "portfolio"\n',
        '    name = "p"\n    context_kind = (\n        "portfolio"\n    )\n',
        '    name = "p"\n    context_kind = "portfolio"\n    x = 1 + \\\n        2\n',
    ],
)
def test_context_kind_is_read_alike_in_every_shape(body: str) -> None:
    source = f"from x import Planner\n\n\nclass P(Planner):\n{body}"
    assert read_module(source).classes[0].attributes == {"name": "p", "context_kind": "portfolio"}


def test_an_inherited_context_kind_follows_the_mro() -> None:
    meta = both(
        """
        class Base(Planner):
            context_kind = "portfolio"

        class Child(Base):
            name = "child"

        class Other(Base):
            name = "other"
            context_kind = "weights"
        """
    )
    assert meta.get("Child").attributes == {"name": "child", "context_kind": "portfolio"}  # type: ignore[union-attr]
    assert meta.get("Other").attributes["context_kind"] == "weights"  # type: ignore[union-attr,index]


def test_a_computed_context_kind_is_not_literal() -> None:
    meta = both(
        """
        KIND = "portfolio"

        class P(Planner):
            name = "p"
            context_kind = KIND
        """
    )
    (cls,) = meta.classes
    assert cls.attributes is None
    assert "context_kind" in cls.reason


def test_same_module_inheritance_in_c3_order() -> None:
    meta = both(
        """
        import planforge.contract as c

        class Base(c.Planner):
            tier = "gold"
            tags = ("base",)

        class Left(Base):
            tags = ("left",)

        class Right(Base):
            tags = ("right",)
            description = "right"

        class Child(Left, Right):
            name = "child"

        class NotAPlanner:
            name = "plain"
        """
    )
    by_name = {c.qualname: c for c in meta.classes}
    child = by_name["Child"]
    assert child.attributes == {
        "name": "child",
        "tags": ("left",),
        "tier": "gold",
        "description": "right",
    }
    assert by_name["Base"].is_base
    assert not child.is_base
    assert not by_name["NotAPlanner"].is_planner
    assert by_name["NotAPlanner"].attributes == {"name": "plain"}


def test_planner_before_a_mixin_hides_the_mixin_attributes() -> None:
    meta = both(
        """
        class Mixin:
            tags = ("mixin",)

        class P(Planner, Mixin):
            name = "p"
        """
    )
    assert meta.get("P") is not None
    assert meta.get("P").attributes == {"name": "p"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "reason_part"),
    [
        ("class P(Planner):\n    name = NAME\n", "'name' in class P is not a literal"),
        ("class P(Planner):\n    name = make()\n", "not a literal"),
        ("class P(Planner):\n    name = f'p{1}'\n", "not a literal"),
        ("class P(Planner):\n    tags = ('a',) + ('b',)\n", "not a literal"),
        ("class P(Planner):\n    @property\n    def name(self):\n        return 'x'\n", "name"),
        ("class P(External):\n    name = 'p'\n", "inherits from External"),
        ("class P(Planner, metaclass=Meta):\n    name = 'p'\n", "class keywords"),
        ("@register\nclass P(Planner):\n    name = 'p'\n", "decorated"),
        ("class P(Planner):\n    name = 'p'\nP = wrap(P)\n", "rebound"),
        ("class B(Other):\n    pass\nclass P(B):\n    name = 'p'\n", "class B inherits from Other"),
        ("class P(Planner):\n    if X:\n        name = 'p'\n", "'name' in class P"),
    ],
)
def test_non_literal_classes_are_flagged_not_evaluated(source: str, reason_part: str) -> None:
    meta = both(source)
    cls = meta.get("P")
    assert cls is not None
    assert cls.attributes is None
    assert reason_part in cls.reason


@pytest.mark.parametrize(
    "body",
    [
        '    "x" if (name := 1) else 2\n',  # a walrus in an expression statement binds
        "    other = (name,\n        version) = ('a', 'b')\n",  # a target on a later line
        "    name, other = 'p', 1\n",
        "    name += 'x'\n",
        "    for name in ('a',):\n        pass\n",
    ],
)
def test_every_binding_of_a_metadata_name_makes_it_not_literal(body: str) -> None:
    source = "class P(Planner):\n    version = '1'\n" + body
    (cls,) = read_module(source).classes
    assert cls.attributes is None
    assert "'name'" in cls.reason


def test_assignments_inside_a_method_call_are_not_class_attributes() -> None:
    meta = both(
        """
        class P(Planner):
            name = "p"

            def plan(self, objective, context):
                return self.new_plan(
            name = "inside a call"
                )

            tags = ("t",)
        """
    )
    assert meta.classes[0].attributes == {"name": "p", "tags": ("t",)}


def test_nothing_is_executed() -> None:
    source = "import sys\nsys.exit(3)\nraise SystemExit(4)\nclass P(Planner):\n    name = 'p'\n"
    assert read_module(source).get("P") is not None


def test_a_class_under_a_condition_is_a_binding_not_a_class() -> None:
    assert read_module("if X:\n    class P(Planner):\n        name = 'p'\n").classes == ()
    meta = read_module("class P(Planner):\n    name = 'a' \\\n        'b'\n")
    assert meta.get("P").attributes == {"name": "ab"}  # type: ignore[union-attr]


_ROOT = Path(__file__).resolve().parents[2]
_REAL_PLANNER_MODULES = sorted(
    [
        *(_ROOT / "examples/plugins/src/planforge_examples").glob("*.py"),
        _ROOT / "src/planforge/portfolio/planner.py",
    ],
    key=lambda path: path.name,
)


def test_the_real_planner_modules_are_all_there() -> None:
    names = [path.name for path in _REAL_PLANNER_MODULES]
    assert names == ["__init__.py", "checklist.py", "planner.py", "rebalance.py", "risk.py"]


@pytest.mark.parametrize("path", _REAL_PLANNER_MODULES, ids=lambda path: path.name)
def test_real_planner_modules_are_read_without_the_sandbox(path: Path) -> None:
    planners = [c for c in read_module(path.read_bytes()).classes if c.is_planner]
    assert all(c.attributes is not None for c in planners), path
    if path.name != "__init__.py":
        assert planners, path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (r"'a\tb'", "a\tb"),
        (r'"say \"hi\" \\ done"', 'say "hi" \\ done'),
        (r"'it\'s'", "it's"),
        (r"'\x41\u00e9\101\0'", "A\u00e9A\x00"),
        (r"r'\s*(?:,|;)'", r"\s*(?:,|;)"),
        (r'R"\d+\"x"', r"\d+\"x"),
        ("u'plain'", "plain"),
        (r"U'\n'", "\n"),
        (r'"""one\n\t"""', "one\n\t"),
        (r"r'''a\'''b'''", r"a\'''b"),
        ("'line \\\n continued'", "line  continued"),  # a backslash-newline inside a string
        (r"b'\x00ab'", b"\x00ab"),  # bytes are literals; validation rejects them later
        (r"rb'\d'", rb"\d"),
        ("Br'x'", b"x"),
        (r"('a\n', r'\b', " + '"c")', ("a\n", r"\b", "c")),
        (r"[u'x', 'y\t']", ["x", "y\t"]),
        ("(\n        'a\\n',\n        r'b',\n    )", ("a\n", "b")),
        ("(r'one')", "one"),
        ("'\\N{EM DASH}'", "\u2014"),
        ("'\\U0001F600'", "\U0001f600"),
        ("\\\n        'p'", "p"),  # a line continuation before the value
        (r"make('\n')", None),  # not a literal
        ("('a',\n        'b') \\\n        + ('c',)", None),
    ],
)
def test_escaped_and_prefixed_values_are_decoded_like_python(value: str, expected: object) -> None:
    source = (
        '"""Doc with \\n and a \\"quote\\"."""\nimport re\n_RE = re.compile(r"\\s+")\n\n\n'
        f"class P(Planner):\n    name = {value}\n    tags = ('t',)\n"
    )
    (cls,) = read_module(source).classes
    if expected is None:
        assert cls.attributes is None
    else:
        assert cls.attributes == {"name": expected, "tags": ("t",)}


@pytest.mark.parametrize(
    "value", ["f'p'", "F'p{1}'", r"rf'\d'", "fR'x'", "(f'a', 'b')", "['a', f'b']", "f'''x'''"]
)
def test_f_strings_are_not_literals(value: str) -> None:
    (cls,) = read_module(f"class P(Planner):\n    name = {value}\n").classes
    assert cls.attributes is None
    assert "'name' in class P is not a literal" in cls.reason


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("class P(Planner):\n    name = b'caf\u00e9'\n", 2),  # bytes hold ASCII characters only
        ("class P(Planner):\n    name = '\\x4'\n", 2),  # a truncated escape
        ("class P(Planner):\n    name = 'p'\nX = 'unterminated\\'\n", 3),
        ("class P(Planner):\n    name = 'p'\n\n    def plan(self o c):\n        pass\n", 4),
        ("class P(Planner:\n", 1),
    ],
)
def test_sources_python_rejects_raise_a_syntax_error_with_the_line(source: str, line: int) -> None:
    with pytest.raises(SyntaxError) as caught:
        read_module(source)
    assert caught.value.lineno == line


@pytest.mark.parametrize(
    "code",
    [
        'X = 1 if"a"else 2\n',  # `if` is a keyword, not a prefix
        'Y = None or"x"\n',
        'Z = (1, rb"\\x")\n',
        'W = [f"{w}\\n" for w in "ab"]\n',
        "V = 'a#b'  # 'c' \\ \"d\"\n",
        'U = """a "quoted" \\""" inside"""\n',
    ],
)
def test_prefixes_and_escapes_in_module_code_do_not_disturb_the_class(code: str) -> None:
    source = code + "\n\nclass P(Planner):\n    name = 'p'\n"
    assert read_module(source).get("P").attributes == {"name": "p"}  # type: ignore[union-attr]


def test_binds_name_sees_other_bindings() -> None:
    source = "from x import Imported\nif Y:\n    class Cond(Planner):\n        pass\n"
    assert binds_name(source, "Imported")
    assert binds_name(source, "Cond")
    assert not binds_name(source, "Missing")
    assert binds_name("from x import *\n", "Anything")


@pytest.mark.parametrize(
    "opening",
    [
        '"""Doc."""\nfrom x import Planner\n',
        "from x import *\n",
        "from x import (\n    Planner,\n    name,\n)\nimport os\n",
        "import os\nname = 1\nfrom y import Planner\n",
        "   \nimport os  # a comment\n\n",
    ],
)
def test_the_opening_lines_are_read_like_any_statement(opening: str) -> None:
    source = opening + '\n\nclass P(Planner):\n    name = "p"\n\n\nP = 3\n'
    try:
        meta = read_module(source)
    except SyntaxError:
        assert opening.startswith("   \n")  # indented code before the first line, as Python says
        return
    (cls,) = meta.classes
    assert cls.attributes is None
    assert "rebound" in cls.reason


# --- property: the reader agrees with ast.literal_eval ----------------------------------------

_words = st.text(alphabet="abcxyz -_.#=:()'", min_size=0, max_size=8)
_plain = st.text(alphabet="abcdef xyz-_.#=:()[]", min_size=0, max_size=10)


def _quote(text: str) -> str:
    return f'"{text}"'


_ESCAPES = ("\\n", "\\t", "\\\\", '\\"', "\\'", "\\x41", "\\u00e9", "\\101", "\\0")
_STRING_PREFIXES = ("", "", "r", "R", "u", "U", "b", "rb", "Br", "f", "rF")


@st.composite
def _escaped_string(draw: st.DrawFn, prefixes: tuple[str, ...] = _STRING_PREFIXES) -> str:
    """A string literal with escapes, quotes and perhaps a prefix, as Python accepts it."""
    prefix = draw(st.sampled_from(prefixes))
    quote = draw(st.sampled_from(["'", '"', "'''", '"""']))
    pieces = draw(st.lists(st.sampled_from([*"ab #=:(),\n", "'", '"', *_ESCAPES]), max_size=6))
    if len(quote) == 1:
        pieces = [piece for piece in pieces if piece != "\n"]
    if prefix.lower() == "b":
        pieces = [piece for piece in pieces if piece != "\\u00e9"]  # no escape in bytes
    # a quote of the string's own kind is escaped; in a triple-quoted string every quote is,
    # so that none runs into the closing quotes
    body = "".join(
        "\\" + piece if piece in ("'", '"') and (piece == quote or len(quote) == 3) else piece
        for piece in pieces
    )
    return f"{prefix}{quote}{body}{quote}"


_literal = st.one_of(
    _escaped_string(),
    st.lists(_escaped_string(), min_size=1, max_size=3).map(lambda i: "(" + ", ".join(i) + ",)"),
    st.lists(_escaped_string(), max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    _plain.map(_quote),
    _plain.map(lambda s: f"'{s}'".replace("''", "'a'") if "'" not in s else _quote(s)),
    st.integers(-5, 100).map(str),
    st.floats(0, 1, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["True", "False", "None", "()", "[]", "set()", "NAME", "make()", "r'x'"]),
    st.lists(_plain.map(_quote), min_size=1, max_size=3).map(lambda i: "(" + ", ".join(i) + ",)"),
    st.lists(_plain.map(_quote), max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    st.lists(_plain.map(_quote), min_size=1, max_size=3).map(
        lambda items: "(\n        " + ",\n        ".join(items) + ",\n    )"
    ),
)
_attribute = st.sampled_from([*METADATA_ATTRIBUTES, "helper", "_private"])


@st.composite
def _class_block(draw: st.DrawFn, index: int, earlier: list[str]) -> str:
    name = f"C{index}"
    bases = draw(
        st.lists(
            st.sampled_from(["Planner", "contract.Planner", "object", "Other", *earlier]),
            max_size=2,
            unique=True,
        )
    )
    lines = [f"class {name}({', '.join(bases)}):" if bases else f"class {name}:"]
    if draw(st.booleans()):
        lines.append(f'    """Doc {draw(_words)}."""')
    elif draw(st.booleans()):
        lines.append(f"    {draw(_escaped_string(('', 'r', 'u')))}")
    body = draw(
        st.lists(
            st.one_of(
                st.tuples(_attribute, _literal).map(lambda p: f"    {p[0]} = {p[1]}"),
                st.tuples(_attribute, _literal).map(lambda p: f"    {p[0]}: str = {p[1]}"),
                _attribute.map(lambda a: f"    {a}: int"),
                st.just("    # a comment = 'x'"),
                _attribute.map(lambda a: f"    def {a}(self):\n        return 1"),
                st.just("    def plan(self, o, c):\n        return f(\n    name = 'x',\n        )"),
                st.just("    def run(\n        self,\n    ) -> int:\n        return [\n1,\n]"),
                st.just("    async def go(self):\n        return 1"),
                st.just("    @property\n    def size(self):\n        return 1"),
                _escaped_string().map(lambda s: f"    def show(self):\n        return {s}"),
                _escaped_string().map(lambda s: f"    _pattern = re.compile({s})"),
                _attribute.map(lambda a: f"    {a} = 1 + \\\n        2"),  # continuation
            ),
            min_size=1,
            max_size=5,
        )
    )
    lines.extend(body)
    if all(line.strip().startswith("#") for line in body):
        lines.append("    pass")
    return "\n".join(lines)


@st.composite
def _module(draw: st.DrawFn) -> str:
    parts = ['"""A module."""', "from planforge import contract", "from x import Planner"]
    names: list[str] = []
    for index in range(draw(st.integers(1, 4))):
        parts.append(draw(_class_block(index, list(names))))
        names.append(f"C{index}")
        if draw(st.integers(0, 5)) == 0:
            parts.append(f"{draw(st.sampled_from(names))} = {draw(_literal)}")
        if draw(st.integers(0, 5)) == 0:
            parts.append("def helper():\n    value = 1\n    return value")
        if draw(st.integers(0, 3)) == 0:
            parts.append(f"_RE{index} = re.compile({draw(_escaped_string())})")
        if draw(st.integers(0, 9)) == 0:
            parts.append(f"_SUM{index} = 1 + \\\n    2")  # a line continuation
    return "\n\n\n".join(parts) + "\n"


_BAD = object()
_PLANNER_BASES = {"Planner", "contract.Planner"}


def _expected(source: str, node: ast.ClassDef) -> dict[str, Any] | None:
    """A class's own metadata as `ast.literal_eval` reads each value's source text."""
    own: dict[str, Any] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            if stmt.name in METADATA_ATTRIBUTES:
                own[stmt.name] = _BAD
            continue
        if isinstance(stmt, ast.Assign):
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue  # a docstring, `pass`, a bare annotation: no binding
        if isinstance(target, ast.Name) and target.id in METADATA_ATTRIBUTES:
            text = ast.get_source_segment(source, value)
            assert text is not None
            try:
                own[target.id] = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError):
                own[target.id] = _BAD
    return None if any(value is _BAD for value in own.values()) else own


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_module())
def test_the_reader_agrees_with_literal_eval(source: str) -> None:
    """Each class deriving only from `Planner`, and not rebound later, holds exactly what
    `ast.literal_eval` makes of its values' source text, or is not literal where that fails."""
    meta = read_module(source)
    tree = ast.parse(source)
    rebound = {
        t.id
        for s in tree.body
        if isinstance(s, ast.Assign)
        for t in s.targets
        if isinstance(t, ast.Name)
    }
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name in rebound:
            continue
        bases = {ast.unparse(b) for b in node.bases}
        if not bases or not bases <= _PLANNER_BASES:
            continue
        found = meta.get(node.name)
        assert found is not None, source
        assert found.is_planner, source
        assert found.attributes == _expected(source, node), source


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_module(), st.integers(0, 20))
def test_a_module_that_does_not_compile_is_a_syntax_error_at_its_line(
    source: str, where: int
) -> None:
    parts = source.split("\n\n\n")
    cut = where % (len(parts) + 1)
    broken = "\n\n\n".join([*parts[:cut], "def plan(self o c):\n    pass", *parts[cut:]])
    try:
        compile(broken, "<test>", "exec")
    except SyntaxError as expected:
        line = expected.lineno
    else:  # the cut fell inside a string literal, so the text is still valid Python
        assume(False)
    with pytest.raises(SyntaxError) as caught:
        read_module(broken)
    assert caught.value.lineno == line, broken


def test_threads_reading_modules_of_many_sizes_get_the_right_strings() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def module(size: int) -> str:
        padding = "".join(f'_S{i} = "s{i}"\n' for i in range(size))
        return f'{padding}\n\nclass P(Planner):\n    name = "p{size}"\n    tags = ("t{size}",)\n'

    sizes = range(0, 400, 7)
    sources = [module(size) for size in sizes]
    expected = [{"name": f"p{size}", "tags": (f"t{size}",)} for size in sizes]

    def read_all(offset: int) -> bool:
        order = sources[offset:] + sources[:offset]
        wanted = expected[offset:] + expected[:offset]
        return all(
            read_module(s).classes[0].attributes == w for s, w in zip(order, wanted, strict=True)
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read_all, range(0, 56, 7)))
