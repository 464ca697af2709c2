from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planforge.contract import METADATA_ATTRIBUTES
from planforge.factory import metadata
from planforge.factory.metadata import (
    ModuleMetadata,
    binds_name,
    read_module,
    read_module_ast,
    read_module_fast,
)


def both(source: str) -> ModuleMetadata:
    """Read with both readers, insist they agree, return the answer."""
    text = textwrap.dedent(source)
    slow = read_module_ast(text)
    fast = read_module_fast(text)
    if fast is not None:
        assert fast == slow
    return slow


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
        '    name = "p"\n    context_kind = "portfolio"\n',  # the class-head step
        '    name = "p"\n    context_kind: str = "portfolio"\n',  # the general first-tier step
        '    name = "p"\n    context_kind = (\n        "portfolio"\n    )\n',
        '    name = "p"\n    context_kind = "portfolio"\n    x = 1 + \\\n        2\n',
    ],
)
def test_context_kind_is_read_alike_on_every_path(body: str) -> None:
    """Every reader and every tier of the fast one reads the new attribute the same way."""
    source = f"from x import Planner\n\n\nclass P(Planner):\n{body}"
    slow = read_module_ast(source)
    assert slow.classes[0].attributes == {"name": "p", "context_kind": "portfolio"}
    fast = read_module_fast(source)
    assert fast is None or fast == slow
    for scanner in (metadata._scan_quick, metadata._scan):
        try:
            tier = scanner(metadata._Text("\n" + source + "\n"))
        except metadata._Unsure:
            continue
        assert tier == slow, scanner.__name__


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
    slow = read_module_ast(source)
    assert slow.classes[0].attributes is None
    assert read_module(source)[0] == slow
    for scanner in (metadata._scan_quick, metadata._scan):  # no tier may answer otherwise
        try:
            tier = scanner(metadata._Text("\n" + source + "\n"))
        except metadata._Unsure:
            continue
        assert tier == slow, scanner.__name__


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
    meta, _ = read_module(source)
    assert meta.get("P") is not None


def test_fast_reader_steps_aside_for_shapes_it_does_not_know() -> None:
    assert read_module_fast("if X:\n    class P(Planner):\n        name = 'p'\n") is None
    meta, reader = read_module("class P(Planner):\n    name = 'a' \\\n        'b'\n")
    assert reader == "ast"
    assert meta.get("P").attributes == {"name": "ab"}  # type: ignore[union-attr]
    _, reader = read_module("class P(Planner):\n    name = r'raw'\n")
    assert reader == "fast"


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
def test_real_planner_modules_are_read_by_the_fast_reader(path: Path) -> None:
    source = path.read_bytes()
    fast = read_module_fast(source)
    assert fast is not None, f"{path} falls back to ast"
    assert fast == read_module_ast(source)


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
        (r"b'\x00ab'", b"\x00ab"),  # bytes are literals to both readers; validation rejects them
        (r"rb'\d'", rb"\d"),
        ("Br'x'", b"x"),
        (r"('a\n', r'\b', " + '"c")', ("a\n", r"\b", "c")),
        (r"[u'x', 'y\t']", ["x", "y\t"]),
        ("(\n        'a\\n',\n        r'b',\n    )", ("a\n", "b")),
        ("(r'one')", "one"),
        (r"make('\n')", None),  # not a literal
    ],
)
def test_escaped_and_prefixed_values_are_decoded_like_python(value: str, expected: object) -> None:
    source = (
        '"""Doc with \\n and a \\"quote\\"."""\nimport re\n_RE = re.compile(r"\\s+")\n\n\n'
        f"class P(Planner):\n    name = {value}\n    tags = ('t',)\n"
    )
    fast = read_module_fast(source)
    assert fast is not None, source
    assert fast == read_module_ast(source)
    if expected is None:
        assert fast.classes[0].attributes is None
    else:
        assert fast.classes[0].attributes == {"name": expected, "tags": ("t",)}


@pytest.mark.parametrize(
    "value", ["f'p'", "F'p{1}'", r"rf'\d'", "fR'x'", "(f'a', 'b')", "['a', f'b']", "f'''x'''"]
)
def test_f_strings_are_not_literals_for_either_reader(value: str) -> None:
    source = f"class P(Planner):\n    name = {value}\n"
    fast = read_module_fast(source)
    assert fast is not None
    assert fast == read_module_ast(source)
    assert fast.classes[0].attributes is None
    assert "'name' in class P is not a literal" in fast.classes[0].reason


@pytest.mark.filterwarnings("ignore:invalid octal escape:DeprecationWarning")
@pytest.mark.parametrize(
    "source",
    [
        "x = 1 + \\\n    2\nclass P(Planner):\n    name = 'p'\n",  # a line continuation
        "class P(Planner):\n    name = \\\n        'p'\n",
        "class P(Planner):\n    tags = ('a',\n        'b') \\\n        + ('c',)\n",
        "class P(Planner):\n    name = '\\N{EM DASH}'\n",  # escapes the fast reader leaves alone
        "class P(Planner):\n    name = '\\U0001F600'\n",
        "class P(Planner):\n    name = '\\777'\n",
    ],
)
def test_backslashes_outside_strings_or_rare_escapes_make_the_fast_reader_unsure(
    source: str,
) -> None:
    assert read_module_fast(source) is None
    meta, reader = read_module(source)
    assert reader == "ast"
    assert meta == read_module_ast(source)


@pytest.mark.parametrize(
    "source",
    [
        "class P(Planner):\n    name = b'caf\u00e9'\n",  # bytes hold ASCII characters only
        "class P(Planner):\n    name = '\\x4'\n",  # a truncated escape
        "class P(Planner):\n    name = 'p'\nX = 'unterminated\\'\n",
    ],
)
def test_strings_python_rejects_are_left_to_the_syntax_error(source: str) -> None:
    assert read_module_fast(source) is None
    with pytest.raises(SyntaxError):
        read_module(source)


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
def test_prefixes_and_escapes_in_module_code_keep_the_fast_reader(code: str) -> None:
    source = code + "\n\nclass P(Planner):\n    name = 'p'\n"
    fast = read_module_fast(source)
    assert fast is not None, source
    assert fast == read_module_ast(source)


def test_syntax_error_raises_and_binds_name_sees_other_bindings() -> None:
    with pytest.raises(SyntaxError):
        read_module_ast("class P(Planner:\n")
    source = "from x import Imported\nif Y:\n    class Cond(Planner):\n        pass\n"
    assert binds_name(source, "Imported")
    assert binds_name(source, "Cond")
    assert not binds_name(source, "Missing")


# --- property: the fast reader agrees with ast --------------------------------------------

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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_module())
def test_fast_and_ast_readers_agree(source: str) -> None:
    slow = read_module_ast(source)
    fast = read_module_fast(source)
    if "+ \\\n" in source:  # a line continuation (the generated strings hold no `+`)
        assert fast is None, source
    if fast is not None:
        assert fast == slow, source
    # each tier of the fast reader on its own, so one cannot hide the other's mistakes
    for scanner in (metadata._scan_quick, metadata._scan):
        try:
            tier = scanner(metadata._Text("\n" + source + "\n"))
        except metadata._Unsure:
            continue
        assert tier == slow, (scanner.__name__, source)


def test_fast_reader_handles_the_generated_common_shape() -> None:
    source = (
        '"""A module."""\n\nfrom planforge import contract\n\n\n'
        "class C0(contract.Planner):\n"
        '    """Doc."""\n'
        '    name = "c0"\n'
        "    tags: tuple[str, ...] = (\n"
        '        "a",\n'
        "    )\n\n"
        "    def plan(self, o, c):\n"
        "        return 1\n"
    )
    fast = read_module_fast(source)
    assert fast is not None
    assert fast == read_module_ast(source)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abrfu \n\"'#:=()\\", max_size=40))
def test_quick_string_split_agrees_with_the_tokenizer(text: str) -> None:
    try:
        quick = metadata._split_double_quoted(text)
    except metadata._Unsure:
        return  # unsure is always a safe answer
    if quick is not None:
        assert quick == metadata._split_tokens(text)


def test_quick_string_split_steps_aside_when_unsure() -> None:
    split = metadata._split_double_quoted
    assert split('x = """a "b" c"""\ny = "d"\n') == ("x = \x00\ny = \x00\n", ['a "b" c', "d"])
    assert split("x = 'a'\n") is None  # single quotes: the tokenizer decides
    assert split('x = 1  # "quoted"\n') is None  # a comment may hide a quote
    assert split('x = """open\n') is None
    assert split('x = "a\nb"\n') is None  # a plain string cannot span lines
    assert split('x = "a"""\n') is None  # `"a"` then `""`: not a triple quote
    assert split('x = "a\\"b"\n') is None  # a backslash: the tokenizer decides
    code, values = split('x = rb"a" + f"{b}"\ny = fr"""c"""\nif"d": pass\n')  # type: ignore[misc]
    assert code == "x = \x00 + \x00\ny = \x00\nif\x00: pass\n"
    assert [getattr(value, "token", value) for value in values] == [
        'rb"a"',
        'f"{b}"',
        'fr"""c"""',
        "d",
    ]


# --- the class-head step of the first tier ------------------------------------------------


def _head_reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Record what the class-head step reads, so a test knows that step ran."""
    seen: list[dict[str, object]] = []
    real = metadata._head_values

    def spy(groups: tuple[str | None, ...], values: list[object]) -> dict[str, object]:
        own = real(groups, values)
        seen.append(dict(own))
        return own

    monkeypatch.setattr(metadata, "_head_values", spy)
    return seen


def test_class_head_reads_every_value_shape_like_python(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _head_reads(monkeypatch)
    source = '''
        """Plugins."""

        from planforge.contract import Planner

        class One(Planner):
            """Doc."""

            name = "one"
            version = 'v1'
            capabilities = ("a", "b",)
            tags = ["x", 'y']
            tier = "gold"
            production_ready = False
            reliability_score = 1
            description = "first" "half"
            keywords = ("solo")
            stateful = True
            priority = 3
            name = "one-again"

            async def plan(self, objective, context):
                return None
    '''
    # `description = "first" "half"` is read in part: the step steps aside for that class
    text = textwrap.dedent(source)
    assert both(text).classes[0].attributes is not None
    assert seen == []
    seen.clear()
    result = both(text.replace('"first" "half"', '"whole"'))
    attributes = result.classes[0].attributes
    assert attributes is not None
    assert attributes["name"] == "one-again"  # the last assignment wins
    assert attributes["capabilities"] == ("a", "b")
    assert attributes["tags"] == ["x", "y"]
    assert attributes["keywords"] == "solo"  # brackets around one string make no tuple
    assert attributes["reliability_score"] == 1
    assert type(attributes["reliability_score"]) is int
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("body", "step_runs"),
    [
        ('    name = "a"\n    version = "1"\n', True),
        ('    name = "a"\n\n    def plan(self, o, c):\n        return 1\n', True),
        ('    name = "a" + suffix\n', False),  # read in part
        ('    name = "a"\n    print("side effect")\n', False),
        ('    name = "a"\n    @property\n    def tier(self):\n        return "x"\n', False),
        ('    name = "a"\n    def tier(self):\n        return "x"\n', False),
        ('    name = "a"\n    x = tier = "gold"\n', False),  # a chained assignment
        ('    name: str = "a"\n', False),  # annotated: the general step reads it
        ('    name = f"a{b}"\n', True),
        ('    name = r"a\\d"\n    tags = (b"x", "y")\n', True),
        ('    name = "\\u00e9"\n', True),
    ],
)
def test_class_head_runs_only_where_it_reads_every_line(
    monkeypatch: pytest.MonkeyPatch, body: str, step_runs: bool
) -> None:
    seen = _head_reads(monkeypatch)
    source = "from x import Planner\n\n\nclass P(Planner):\n" + body
    fast = read_module_fast(source)
    assert fast is None or fast == read_module_ast(source)  # unsure is always allowed
    assert bool(seen) is step_runs
    if step_runs:
        assert fast is not None


@pytest.mark.parametrize(
    "value",
    [
        '("a", "b")',
        '( "a" , "b" , )',
        '("a")',
        '("a",)',
        "()",
        "[]",
        '["a"]',
        '[\n        "a",\n        "b"\n    ]',
        '(\n        "a", "b",\n        "c",\n    )',
    ],
)
def test_class_head_reads_bracketed_strings_by_position(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The items of a bracket are the strings between its first and last mark; strings
    before it (the docstrings, the name) shift the marks, not the items."""
    seen = _head_reads(monkeypatch)
    source = (
        '"""Module."""\nfrom x import Planner\n\n\nclass P(Planner):\n    """Doc."""\n\n'
        f'    name = "p"\n    tags = {value}\n    description = "after"\n'
    )
    assert read_module_fast(source) == read_module_ast(source)
    assert len(seen) == 1


def test_class_head_needs_ascii_code_and_a_class_body(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _head_reads(monkeypatch)
    # a name outside strings in another script could pass for a placeholder: no head step
    source = 'from x import Planner\n\n\nclass P(Planner):\n    name = "a"\n    ĝ = 1\n'
    fast = read_module_fast(source)
    assert fast is None or fast == read_module_ast(source)
    assert seen == []
    # a class with no body is a syntax error, never an empty planner
    with pytest.raises(SyntaxError):
        read_module("class P(Planner):\n\n\nx = 1\n")


_head_line = st.one_of(
    st.tuples(st.sampled_from([*METADATA_ATTRIBUTES, "other", "_x"]), _literal).map(
        lambda pair: f"    {pair[0]} = {pair[1]}"
    ),
    _escaped_string(("", "r", "u")).map(lambda text: f"    {text}"),  # a bare string
    st.just(""),
    st.just("    "),
    st.just("    other = 1 if flag else 2"),
    st.just("    reliability_score = -0.25"),
    st.just("    reliability_score = 0.5e1"),
    st.just("    production_ready = Truthy"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_head_line, min_size=1, max_size=8),
    st.booleans(),
)
def test_class_head_agrees_with_ast(lines: list[str], methods: bool) -> None:
    body = "\n".join(lines)
    if not body.strip():
        body += "\n    pass"
    if methods:
        body += "\n\n    def plan(self, o, c):\n        return f(\n            o,\n        )"
    source = f"from x import Planner\n\n\nclass P(Planner):\n{body}\n"
    try:
        slow = read_module_ast(source)
    except SyntaxError:
        return
    try:
        quick = metadata._scan_quick(metadata._Text("\n" + source + "\n"))
    except metadata._Unsure:
        return
    assert quick == slow, source


@pytest.mark.parametrize(
    "opening",
    [
        '"""Doc."""\nfrom x import Planner\n',
        "from x import *\n",  # a star import may bind anything: never read past quickly
        "from x import (\n    Planner,\n    name,\n)\nimport os\n",
        "import os\nname = 1\nfrom y import Planner\n",
        "   \nimport os  # a comment\n\n",
    ],
)
def test_the_opening_lines_are_read_like_any_statement(opening: str) -> None:
    source = opening + '\n\nclass P(Planner):\n    name = "p"\n\n\nP = 3\n'
    try:
        slow = read_module_ast(source)
    except SyntaxError:
        slow = None
    fast = read_module_fast(source)
    if "*" in opening:
        assert fast is None
    if fast is not None:
        assert fast == slow


def test_threads_reading_modules_of_many_sizes_get_the_right_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(metadata, "_MARKS", [])  # every thread starts by growing the marks

    def module(size: int) -> str:
        padding = "".join(f'_S{i} = "s{i}"\n' for i in range(size))
        return f'{padding}\n\nclass P(Planner):\n    name = "p{size}"\n    tags = ("t{size}",)\n'

    sources = [module(size) for size in range(0, 400, 7)]
    expected = [read_module_ast(source) for source in sources]

    def read_all(offset: int) -> bool:
        order = sources[offset:] + sources[:offset]
        wanted = expected[offset:] + expected[:offset]
        return all(read_module_fast(s) == w for s, w in zip(order, wanted, strict=True))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read_all, range(0, 56, 7)))
