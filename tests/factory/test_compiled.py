"""The bytecode reader: Python's cache proves a file compiles; it reads what the parser reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from planforge.contract import METADATA_ATTRIBUTES
from planforge.factory._compiled import _read as read_unguarded
from planforge.factory._metadata import _resolve
from planforge.factory._pycache import SUPPORTED
from planforge.factory._reader import DECORATED, read_source
from planforge.holistic._sources import _WANTED as _MODULE_ATTRIBUTES
from tests.factory.test_metadata import _REAL_PLANNER_MODULES, _module

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="the bytecode reader knows CPython 3.11")

WANTED = frozenset(METADATA_ATTRIBUTES)
HOLISTIC_WANTED = _MODULE_ATTRIBUTES  # what the holistic module group reads


def compiled_events(source: str | bytes, wanted: frozenset[str] = WANTED) -> list[Any] | None:
    data = source if isinstance(source, bytes) else source.encode()
    code = compile(data, "<plugin>", "exec", dont_inherit=True)
    return read_unguarded(code, data, wanted)  # unguarded: a failure fails the test


def shape(events: list[Any]) -> list[Any]:
    """Class statements as read, and between them the names bound (as a set, docstring aside)."""
    result: list[Any] = []
    for kind, payload in events:
        if kind == "class":
            result.append(tuple(payload))
        else:
            names = set(payload) - {"__doc__"}
            if result and isinstance(result[-1], set):
                result[-1] |= names
            elif names:
                result.append(names)
    return result


def assert_same_reading(source: str | bytes, wanted: frozenset[str] = WANTED) -> bool:
    """The two readers agree; returns whether the bytecode reader read the module itself."""
    fast = compiled_events(source, wanted)
    slow = read_source(source, wanted)
    if fast is None:
        return False
    assert shape(fast) == shape(slow), source
    assert _resolve(fast) == _resolve(slow), source
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_module())
def test_the_bytecode_reader_agrees_with_the_parser(source: str) -> None:
    assert_same_reading(source)
    assert_same_reading(source, HOLISTIC_WANTED)


PLAIN = '''\
"""Planners."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge.contract import Plan, Planner
from planforge import contract

if TYPE_CHECKING:
    from collections.abc import Mapping


class Base(contract.Planner):
    """A base, with a docstring."""

    tier = "stable"
    tags = (
        "bench",  # a comment inside
        "é-ü",
    )


class Fine(Base, Planner):
    name = "fine"
    version: str = "1.0.0"
    capabilities = ("rebalance", "cap")
    keywords = ["a", 'b']
    description = "it's fine"
    reliability_score = 0.8
    production_ready = True
    stateful = False

    def plan(self, objective: str, context: Mapping[str, object]) -> Plan:
        return super().plan(objective, context)


HELPER = 1
'''


def test_a_plain_plugin_module_is_read_from_its_bytecode() -> None:
    assert assert_same_reading(PLAIN)
    events = compiled_events(PLAIN) or []
    classes = {raw.name: raw for kind, raw in events if kind == "class"}
    assert classes["Fine"].own["capabilities"] == ("rebalance", "cap")
    assert classes["Base"].docstring == "A base, with a docstring."
    assert classes["Base"].own["tags"] == ("bench", "é-ü")
    assert classes["Fine"].bases == ("Base", "Planner")


@pytest.mark.parametrize("path", _REAL_PLANNER_MODULES, ids=lambda path: path.name)
def test_the_real_planner_modules_are_read_alike(path: Path) -> None:
    assert_same_reading(path.read_text())


_SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src" / "planforge"


@pytest.mark.parametrize(
    "path", sorted((_SOURCE_ROOT / "portfolio").glob("*.py")), ids=lambda path: path.name
)
def test_the_shipped_holistic_modules_are_read_alike(path: Path) -> None:
    """The reference planner's own module files, read for the module group's attributes."""
    assert_same_reading(path.read_text(), HOLISTIC_WANTED)
    assert_same_reading(path.read_text())


def test_most_shipped_module_files_are_read_from_their_bytecode() -> None:
    """The shortcut is not a dead branch: the shapes real files have are the shapes it knows."""
    paths = sorted((_SOURCE_ROOT / "portfolio").glob("*.py"))
    read_here = [
        path.name for path in paths if assert_same_reading(path.read_text(), HOLISTIC_WANTED)
    ]
    assert len(read_here) >= len(paths) // 2, read_here


@pytest.mark.parametrize(
    "value",
    [
        '"a" + "b"',
        '"ab" * 2',
        '("a", "b")[0]',
        "not True",
        "~1",
        "1 + 2",
        "-1",
        "1 + 2j",
        'f"abc"',
        'f"a{b}"',
        '"a" "b"',
        '("a"\n        "b")',
        '"a", "b"',
        '["a", *"bc"]',
        '{"a": 1, **{"b": 2}}',
        "{1, 2}",
        "set()",
        "set([1])",
        "frozenset()",
        "NAME",
        "make()",
        "...",
        "b'x'",
        "r'\\d'",
        '"\\x41"',
        '"\\ud800"',
        '("\\udc80", "a")',
        '"é-ü"',
        "0x10",
        "1_000",
        "(\n        'a',  # note\n        'b',\n    )",
        "lambda: 1",
        '"a" if True else "b"',
        '("a" if X else "b")',
        "(1 if 0 else [2])",
        'True and "a"',
        '"a" or "b"',
        '"a" \\\n        if True else "b"',
        '(  # why\n        "a"\n    )',
        "[i for i in range(3)]",
    ],
)
def test_every_kind_of_value_is_read_as_the_parser_reads_it(value: str) -> None:
    """Each is read alike; a folded part of a larger expression is left to the parser."""
    source = f"class P(Planner):\n    name = {value}\n    tags = ('t',)\n"
    read_here = assert_same_reading(source)
    folded_part = " if " in value or " and " in value or " or " in value
    assert read_here != (folded_part or value.startswith("(  #")), value


@pytest.mark.parametrize(
    "body",
    [
        "name = tags = 'x'",
        "(name := 'x')",
        "del name",
        "name += 'x'",
        "import name",
        "from x import name",
        "def name(self): pass",
        "@property\n    def name(self): pass",
        "class name: pass",
        "__doc__ = 'x'\n    name = 'y'",
        "name, tags = 'a', 'b'",
        "if X:\n        name = 'x'",
        "for name in 'ab': pass",
        "try:\n        name = 'x'\n    except Exception:\n        pass",
        "global name\n    name = 'x'",
        "name: str",
        "if False:\n        name = 'x'",
        "if __debug__:\n        pass\n    else:\n        name = 'x'",
        "raise X\n    name = 'x'",
        "name: str = 'x'",
        "name='x'",
        "name = 'x' ;",
        "def f(self):\n        return super().f()",
    ],
)
def test_every_way_to_bind_a_name_is_read_as_the_parser_reads_it(body: str) -> None:
    assert_same_reading(f"class P(Planner):\n    {body}\n")


@pytest.mark.parametrize(
    "module",
    [
        "@decorate\nclass P(Planner):\n    name = 'p'\n",
        "class P(Planner, metaclass=M):\n    name = 'p'\n",
        "class P(bases[0]):\n    name = 'p'\n",
        "class P(*bases):\n    name = 'p'\n",
        "if X:\n    class P(Planner):\n        name = 'p'\n",
        "if X:\n    pass\nelse:\n    class P(Planner):\n        name = 'p'\n",
        "class P(Planner):\n    name = 'p'\nP = wrap(P)\n",
        "class P(Planner):\n    name = 'p'\nfrom x import *\n",
        "class P(Planner):\n    name = 'p'\nP = Q = 1\n",
        "class P(Planner):\n    name = 'p'\n[(P := 1) for _ in ()]\n",
        "try:\n    import x\nexcept ImportError:\n    x = None\nclass P(Planner):\n    pass\n",
        "for i in ():\n    pass\nclass P(Planner):\n    name = 'p'\n",
        "# -*- coding: latin-1 -*-\nclass P(Planner):\n    name = 'p'\n",
        "\ufeffclass P(Planner):\n    name = 'p'\n".encode(),
        "class P(Planner):\n    name = 'p'\ndel P\n",
        "global P\nclass P(Planner):\n    name = 'p'\nP = 1\n",
        "class P(Planner):\n    name = 'p'\nif False:\n    P = 1\n",
        "class P(Planner):\n    name = 'p'\nif not True:\n    P = 1\n",
        "class P(Planner):\n    name = 'p'\nwhile 0:\n    P = 1\n",
        "if __debug__:\n    pass\nelse:\n    P = 1\nclass P(Planner):\n    name = 'p'\n",
        "if True:\n    class P(Planner):\n        name = 'p'\n",
        "class P(Planner):\n    name = 'p'\nraise ImportError\nP = 1\n",
        "class P(Planner):\n    name = 'p'\nFalse and (P := 1)\n",
        "import typing\nif typing.TYPE_CHECKING:\n    P = 1\nclass P(Planner):\n    pass\n",
        "match x:\n    case 1:\n        class P(Planner):\n            name = 'p'\n",
    ],
)
def test_module_shapes_are_read_alike_or_left_to_the_parser(module: str) -> None:
    assert_same_reading(module)


@pytest.mark.parametrize(
    "decorators",
    [
        "@decorate\n",
        "@dataclass(frozen=True)\n",
        "@first\n@second.attribute\n",
        "@registry.register('p')\n# a comment\n",
    ],
)
def test_decorated_classes_are_read_from_bytecode_and_flagged(decorators: str) -> None:
    source = (
        f"class Base(Planner):\n    tier = 'gold'\n\n\n{decorators}class P(Base):\n    name = 'p'\n"
    )
    assert assert_same_reading(source)
    events = compiled_events(source) or []
    flagged = {raw.name: raw.flag for kind, raw in events if kind == "class"}
    assert flagged == {"Base": "", "P": DECORATED}


@pytest.mark.parametrize(
    "module",
    [
        "def f(x):\n    if not (x):\n        return 1\n\n\nclass P(Planner):\n    name = 'p'\n",
        "class P(Planner):\n    def f(self):\n        if 0 <= self.x:\n            pass\n"
        "    name = 'p'\n",
        "class P(Planner):\n    @property\n    def f(self):\n        while (self.x):\n"
        "            pass\n        return 1\n    name = 'p'\n",
    ],
)
def test_a_test_of_a_constant_inside_a_function_keeps_the_shortcut(module: str) -> None:
    """The compiler may drop code in a method; no binding the reader reports is there."""
    assert assert_same_reading(module)


@pytest.mark.parametrize(
    "module",
    [
        "class P(Planner):\n    name = 'p'\n    if (0):\n        name = 'q'\n",
        "def f():\n    return 1\nif (False):\n    P = 1\nclass P(Planner):\n    name = 'p'\n",
        "class P(Planner):\n    name = 'p'\n    def f(self):\n        return 1\n    if 0:\n"
        "        name = 'q'\n",
    ],
)
def test_a_test_of_a_constant_outside_functions_goes_to_the_parser(module: str) -> None:
    assert not assert_same_reading(module)
    assert compiled_events(module) is None


def test_a_class_under_a_condition_binds_its_name() -> None:
    source = "class P(Planner):\n    name = 'p'\nif X:\n    class P(Planner):\n        name = 'q'\n"
    events = compiled_events(source)
    assert events is not None
    assert [kind for kind, _ in events] == ["class", "bind"]


def test_a_failure_of_the_shortcut_falls_back_to_the_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bytecode reader may only make a reading quicker, never different nor broken."""
    from planforge.factory import _compiled

    def broken(*args: object) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(_compiled, "_module_events", broken)
    code = compile(PLAIN, "<plugin>", "exec", dont_inherit=True)
    assert read_source(PLAIN.encode(), WANTED, "<plugin>", code) == read_source(PLAIN, WANTED)
