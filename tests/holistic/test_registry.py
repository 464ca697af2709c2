from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.errors import PlannerError
from planforge.holistic._registry import (
    ENTRY_POINT_GROUP,
    ModuleLoadError,
    ModuleRegistry,
    UnknownModuleError,
    module_dirs_from_env,
)
from planforge.holistic.modules import Filter, HolisticModule, OpportunityCalculator
from tests.factory._dists import add_dist, rewrite_keeping_stamp, touch_later

CALCULATORS = '''
"""Plugin calculators."""
from pathlib import Path

from pydantic import BaseModel

from planforge.holistic.modules import Filter, OpportunityCalculator

Path(__file__).with_suffix(".imported").write_text("yes")  # marker side effect


class Base(OpportunityCalculator):
    """Shared helpers, not a module itself."""

    author = "Plugin Team"
    tags = ("plugin",)


class Windfall(Base):
    """Sells part of a windfall gain."""

    class Params(BaseModel):
        threshold: float = 0.3

    name = "windfall"
    version = "2.1.0"
    description = "Windfall sells"
    dependencies = ("filters.tidy",)

    def calculate(self, context, params):
        return []


class Tidy(Filter):
    name = "tidy"
    version = "1.0.0"

    def apply(self, context, sequences, params):
        return list(sequences)


class Helper:
    name = "not a module"


class Options(BaseModel):
    kind: str = "helper"
    name: str = "options"
'''


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """Forget the modules a test imported, so tests stay independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_directory_modules_are_listed_from_source_without_importing(
    tmp_path: Path, clean_imports: None
) -> None:
    plugins = write_module_dir(tmp_path / "plugins", {"calcs.py": CALCULATORS})
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins])
    listed = registry.list()
    assert [(m.kind, m.name) for m in listed] == [
        ("opportunity_calculators", "windfall"),
        ("filters", "tidy"),
    ]
    windfall = registry.get_metadata("opportunity_calculators", "windfall")
    assert windfall.version == "2.1.0"
    assert windfall.author == "Plugin Team"  # inherited from the same-module base
    assert windfall.tags == ("plugin",)
    assert windfall.dependencies == ("filters.tidy",)
    assert windfall.source == "directory"
    assert windfall.target == f"{plugins / 'calcs.py'}:Windfall"
    assert registry.docstring("opportunity_calculators", "windfall").startswith("Sells part")
    assert (
        registry.describe("opportunity_calculators", "windfall", load=False)["version"] == "2.1.0"
    )
    assert registry.problems() == ()
    assert not (plugins / "calcs.imported").exists()

    cls = registry.load("opportunity_calculators", "windfall")
    assert (plugins / "calcs.imported").exists()
    assert issubclass(cls, OpportunityCalculator)
    assert cls.default_params() == {"threshold": 0.3}
    assert registry.load("opportunity_calculators", "windfall") is cls  # cached
    assert cls.__module__.startswith("_planforge_module_")  # never clashes with other modules


def test_entry_point_modules_are_found_in_dist_info_and_imported_only_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_imports: None
) -> None:
    site = tmp_path / "site"
    source = CALCULATORS
    add_dist(
        site,
        "holistic-extras",
        f"[{ENTRY_POINT_GROUP}]\nwindfall = epmods_a.calcs:Windfall\ntidy = epmods_a.calcs:Tidy\n",
        modules={"epmods_a/__init__.py": "", "epmods_a/calcs.py": source},
    )
    monkeypatch.syspath_prepend(str(site))
    registry = ModuleRegistry(search_path=[str(site)])
    tidy = registry.get_metadata("filters", "tidy")
    assert (tidy.source, tidy.target) == ("entry_point", "epmods_a.calcs:Tidy")
    assert registry.names("opportunity_calculators") == ["windfall"]
    assert "epmods_a.calcs" not in sys.modules
    assert not (site / "epmods_a" / "calcs.imported").exists()
    cls = registry.load("filters", "tidy")
    assert issubclass(cls, Filter)
    assert cls.__module__ == "epmods_a.calcs"
    assert (site / "epmods_a" / "calcs.imported").exists()


def test_code_beats_directory_beats_entry_point_and_losers_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_imports: None
) -> None:
    site = tmp_path / "site"
    add_dist(
        site,
        "dist-one",
        f"[{ENTRY_POINT_GROUP}]\ntidy = epmods_b.calcs:Tidy\n",
        modules={"epmods_b/__init__.py": "", "epmods_b/calcs.py": CALCULATORS},
    )
    plugins = write_module_dir(tmp_path / "plugins", {"calcs.py": CALCULATORS})
    monkeypatch.syspath_prepend(str(site))
    registry = ModuleRegistry(search_path=[str(site)], module_dirs=[plugins])
    assert registry.get_metadata("filters", "tidy").source == "directory"

    class CodeTidy(Filter):
        name = "tidy"
        version = "9.0.0"

    registry.register(CodeTidy)
    assert registry.get_metadata("filters", "tidy").version == "9.0.0"
    assert registry.load("filters", "tidy") is CodeTidy
    shadowed = [s for s in registry.shadowed() if s.key == "filters.tidy"]
    assert [(s.kept_source, s.dropped_source) for s in shadowed] == [
        ("code", "directory"),
        ("code", "entry_point"),
    ]
    registry.unregister("filters", "tidy")
    assert registry.get_metadata("filters", "tidy").source == "directory"


BROKEN_FILES = {
    "badversion.py": (
        "from planforge.holistic.modules import Filter\n"
        "class A(Filter):\n    name = 'a'\n    version = '1.0'\n"
    ),
    "noname.py": "from planforge.holistic.modules import Filter\nclass B(Filter):\n    pass\n",
    "badkind.py": (
        "from planforge.holistic.modules import Filter\n"
        "class C(Filter):\n    name = 'c'\n    kind = 'filterz'\n"
    ),
    "computed.py": (
        "from planforge.holistic.modules import Filter\n"
        "VERSION = '1.0.0'\n"
        "class D(Filter):\n    name = 'd'\n    version = VERSION\n"
    ),
    "dotted.py": (
        "from planforge.holistic.modules import Filter\nclass E(Filter):\n    name = 'e.f'\n"
    ),
    "syntax.py": "class (:\n",
    "good.py": (
        "from planforge.holistic import modules\n"
        "class G(modules.Filter):\n    name = 'good'\n    tags = ['list', 'ok']\n"
    ),
}


def test_invalid_metadata_is_a_reported_problem_never_a_crash(
    tmp_path: Path, clean_imports: None
) -> None:
    plugins = write_module_dir(tmp_path / "plugins", BROKEN_FILES)
    site = tmp_path / "site"
    add_dist(
        site,
        "broken-dist",
        f"[{ENTRY_POINT_GROUP}]\n"
        "missing_class = epmods_c.mods:Nope\n"
        "missing_module = epmods_nowhere.mods:X\n"
        "bare = epmods_c.mods\n",
        modules={"epmods_c/__init__.py": "", "epmods_c/mods.py": "x = 1\n"},
    )
    registry = ModuleRegistry(
        search_path=[str(site)], module_dirs=[plugins, tmp_path / "does-not-exist"]
    )
    assert [m.name for m in registry.list()] == ["good"]
    assert registry.get_metadata("filters", "good").tags == ("list", "ok")
    reasons = {Path(p.target.partition(":")[0]).name: p.reason for p in registry.problems()}
    assert "not a semantic version" in reasons["badversion.py"]
    assert "declares no name" in reasons["noname.py"]
    assert "unknown kind 'filterz'" in reasons["badkind.py"]
    assert "version must be plain literals" in reasons["computed.py"]
    assert "no dots or spaces" in reasons["dotted.py"]
    assert "not valid Python" in reasons["syntax.py"]
    assert "cannot be listed" in reasons["does-not-exist"]
    entry_reasons = [p.reason for p in registry.problems() if p.source == "entry_point"]
    assert any("no top-level module class Nope" in r for r in entry_reasons)
    assert any("source of module epmods_nowhere.mods was not found" in r for r in entry_reasons)
    assert any("names a module, not a class" in r for r in entry_reasons)


def test_a_module_file_that_does_not_compile_is_broken_with_its_line(tmp_path: Path) -> None:
    """The class statement and its literal metadata are fine; a method does not compile."""
    source = (
        "from planforge.holistic import modules\n\n\n"
        "class Tidy(modules.Filter):\n"
        "    name = 'tidy'\n\n"
        "    def apply(self o c):\n"
        "        return c\n"
    )
    plugins = write_module_dir(tmp_path / "plugins", {"tidy.py": source})
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins])
    assert registry.list() == []
    (problem,) = registry.problems()
    assert (problem.source, problem.target) == ("directory", str(plugins / "tidy.py"))
    assert "not valid Python" in problem.reason
    assert "line 7" in problem.reason


def test_a_failed_import_is_a_clear_error_naming_the_module_and_the_cause(
    tmp_path: Path, clean_imports: None
) -> None:
    plugins = write_module_dir(
        tmp_path / "plugins",
        {
            "explodes.py": (
                "from planforge.holistic.modules import Filter\n"
                "class Boom(Filter):\n    name = 'boom'\n"
                "raise RuntimeError('missing licence key')\n"
            ),
            "drifts.py": (
                "from planforge.holistic.modules import Filter\n"
                "class Drift(Filter):\n    name = 'drift'\n"
                "Drift.version = '3.0.0'\n"
            ),
            "wrongbase.py": (
                "from planforge.holistic.modules import HolisticModule\n"
                "class Odd(HolisticModule):\n    name = 'odd'\n    kind = 'filters'\n"
            ),
        },
    )
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins])
    with pytest.raises(ModuleLoadError) as boom:
        registry.load("filters", "boom")
    assert boom.value.module_key == "filters.boom"
    assert "RuntimeError: missing licence key" in boom.value.message
    with pytest.raises(
        ModuleLoadError, match=r"version '3\.0\.0' but its source declares '1\.0\.0'"
    ):
        registry.load("filters", "drift")
    with pytest.raises(ModuleLoadError, match="not a subclass of Filter"):
        registry.load("filters", "odd")
    info = registry.describe("filters", "boom")
    assert "missing licence key" in info["load_error"]


def test_unknown_modules_name_the_known_ones(tmp_path: Path) -> None:
    registry = ModuleRegistry(search_path=[])

    class Alpha(Filter):
        name = "alpha"

    registry.register(Alpha)
    with pytest.raises(UnknownModuleError, match="known filters: alpha") as error:
        registry.get_metadata("filters", "beta")
    assert error.value.module_key == "filters.beta"
    with pytest.raises(UnknownModuleError, match="not a module kind"):
        registry.load("planners", "alpha")
    info = registry.describe("filters", "alpha")
    assert info["default_params"] == {}
    assert info["source"] == "code"


def test_register_rejects_classes_with_bad_metadata() -> None:
    registry = ModuleRegistry(search_path=[])

    class NoVersion(Filter):
        name = "nov"
        version = "one"

    class Mislabelled(HolisticModule):
        name = "mis"
        kind = "filters"

    with pytest.raises(PlannerError, match="semantic version"):
        registry.register(NoVersion)
    with pytest.raises(PlannerError, match="does not derive from Filter"):
        registry.register(Mislabelled)
    with pytest.raises(PlannerError, match="HolisticModule subclasses"):
        registry.register(int)  # type: ignore[arg-type]
    assert registry.list() == []


def test_changed_files_are_reread_on_refresh_and_unchanged_ones_come_from_memory(
    tmp_path: Path,
) -> None:
    plugins = write_module_dir(
        tmp_path / "plugins",
        {
            "mod.py": (
                "from planforge.holistic.modules import Filter\n"
                "class F(Filter):\n    name = 'f'\n    version = '1.0.0'\n"
            )
        },
    )
    path = plugins / "mod.py"
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins])
    assert registry.get_metadata("filters", "f").version == "1.0.0"
    rewrite_keeping_stamp(path, path.read_text().replace("1.0.0", "7.0.0"))
    registry.refresh()
    assert registry.get_metadata("filters", "f").version == "1.0.0"  # same size and mtime
    touch_later(path)
    registry.refresh()
    assert registry.get_metadata("filters", "f").version == "7.0.0"


def test_module_dirs_come_from_the_environment(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write_module_dir(
        one,
        {"a.py": "from planforge.holistic.modules import Filter\nclass A(Filter):\n  name='a'\n"},
    )
    write_module_dir(
        two,
        {"b.py": "from planforge.holistic.modules import Filter\nclass B(Filter):\n  name='b'\n"},
    )
    environ = {"PLANFORGE_MODULE_DIRS": f"{one}{os.pathsep}{os.pathsep}{two}"}
    assert module_dirs_from_env(environ) == [one, two]
    registry = ModuleRegistry.from_environment(environ, search_path=[])
    assert registry.names("filters") == ["a", "b"]


def test_entry_points_to_classes_with_bases_from_other_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_imports: None
) -> None:
    site = tmp_path / "site"
    base = (
        "from planforge.holistic.modules import Filter\n"
        "class SharedBase(Filter):\n    author = 'team'\n"
    )
    mods = (
        "from epmods_d.base import SharedBase\n"
        "class Declared(SharedBase):\n    kind = 'filters'\n    name = 'declared'\n"
        "class Undeclared(SharedBase):\n    name = 'undeclared'\n"
    )
    add_dist(
        site,
        "foreign-bases",
        f"[{ENTRY_POINT_GROUP}]\n"
        "declared_alias = epmods_d.mods:Declared\n"
        "undeclared = epmods_d.mods:Undeclared\n",
        modules={
            "epmods_d/__init__.py": "",
            "epmods_d/base.py": base,
            "epmods_d/mods.py": mods,
        },
    )
    monkeypatch.syspath_prepend(str(site))
    registry = ModuleRegistry(search_path=[str(site)])
    assert registry.names("filters") == ["declared"]
    reasons = [p.reason for p in registry.problems()]
    assert any("derives from SharedBase, defined in another module" in r for r in reasons)
    assert any(
        "named 'declared_alias' but the class declares name 'declared'" in r for r in reasons
    )
    assert issubclass(registry.load("filters", "declared"), Filter)
