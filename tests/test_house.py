"""The shape of the source tree: rooms stay small, arrows point down, modules say what they export.

These are the conventions of the design page turned into checks, so a change that breaks one
fails CI instead of waiting for a reader to notice.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "planforge"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60

# Bottom to top; a module may import its own layer or a lower one, never a higher one.
LAYERS = ("", "factory", "holistic", "portfolio", "configstore", "runtime", "server")
# The CLI and batch planning sit beside the server, above the runtime.
FACE_LAYERS = {"cli": "server", "batch": "server"}


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(SOURCE.parent))


def _layer(dotted: str) -> int:
    """The layer of `planforge.x.y`: a subpackage's rank, or 0 for the shared vocabulary."""
    parts = dotted.split(".")
    top = parts[1] if len(parts) > 1 else ""
    top = FACE_LAYERS.get(top, top)
    return LAYERS.index(top) if top in LAYERS else 0


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, node.module or ""]).rstrip(".")
            elif node.module:
                yield node.lineno, node.module


def _long_functions(tree: ast.AST, lines: list[str]) -> Iterator[tuple[str, int, int]]:
    """Functions longer than the bound with no comment just above them saying why."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= MAX_FUNCTION_LINES:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[first - 2].strip() if first >= 2 else ""
        if not above.startswith("#"):
            yield node.name, node.lineno, length


def _reaches_up(target: str, own: int) -> bool:
    """An import of a higher layer, or of the package face from below the faces."""
    if target == "planforge":
        return own < LAYERS.index("server")  # the faces may read the version from the root
    return _layer(target) > own


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_room_is_small(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{_name(path)} has {len(lines)} lines; split it by idea"
    long = list(_long_functions(ast.parse("\n".join(lines)), lines))
    assert not long, (
        f"{_name(path)}: functions over {MAX_FUNCTION_LINES} lines, no comment saying why: {long}"
    )


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_arrows_point_down(path: Path) -> None:
    module = _module_name(path)
    if module == "planforge":
        return  # the package face re-exports every layer's public names, lazily
    own = _layer(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    upward = [
        (line, target)
        for line, target in _imports(tree, package)
        if target.startswith("planforge") and _reaches_up(target, own)
    ]
    assert not upward, f"{module} imports a higher layer (or the package root): {upward}"


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_module_declares_its_exports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.name == "__main__.py" or "migrations" in path.parts:
        return
    declared = any(
        (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        )
        or (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "__all__"
        )
        for node in tree.body
    )
    assert declared, f"{_name(path)} has no __all__; say which names are its public face"


@pytest.mark.parametrize("path", sorted((SOURCE / "runtime").rglob("*.py")), ids=_name)
def test_the_runtime_knows_no_planner_family(path: Path) -> None:
    """It talks to planners only through the contract (the run protocol)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    families = [
        (line, target)
        for line, target in _imports(tree, package)
        if target.startswith(("planforge.holistic", "planforge.portfolio"))
    ]
    assert not families, f"{module} imports a planner family: {families}"
