"""The module registry's disk cache: a new process reads what an earlier one parsed, a changed
file is read again, and a broken or unwritable cache never changes what is found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import CodeType

import pytest

from planforge.errors import SettingsError
from planforge.holistic import _scan_cache as scan_cache
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic._sources import ModuleGroup
from tests.factory._dists import touch_later

MODULE = """
from planforge.holistic.modules import Filter


class Tidy(Filter):
    '''Keeps every sequence.'''

    name = "tidy"
    version = "{version}"
    tags = ("plugin", "{version}")

    def apply(self, context, sequences, params):
        return list(sequences)
"""

# A new process: how many files it parsed, and the filter's version it found.
CHILD = """
import json, sys
from pathlib import Path
from planforge.holistic._registry import ModuleRegistry
from planforge.holistic._sources import ModuleGroup
parses = []
original = ModuleGroup.parse
ModuleGroup.parse = lambda self, data, path, *code: parses.append(path) or original(
    self, data, path, *code
)
registry = ModuleRegistry(search_path=[], module_dirs=[Path(sys.argv[1])])
found = registry.get_metadata("filters", "tidy")
print(json.dumps({"parsed": len(parses), "version": found.version}))
"""


def _plugins(root: Path, version: str = "1.0.0") -> Path:
    plugins = root / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "tidy.py").write_text(MODULE.format(version=version))
    return plugins


def _child(plugins: Path, cache: Path) -> dict[str, object]:
    env = {"FACTORY_CACHE_DIR": str(cache), "PATH": "", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(plugins)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parses: list[str] = []
    original = ModuleGroup.parse

    def parse(self: ModuleGroup, data: bytes, path: str, compiled: CodeType | None) -> object:
        parses.append(path)
        return original(self, data, path, compiled)

    monkeypatch.setattr(ModuleGroup, "parse", parse)
    return parses


def test_a_new_process_reads_what_an_earlier_one_parsed(tmp_path: Path) -> None:
    plugins, cache = _plugins(tmp_path), tmp_path / "cache"
    assert _child(plugins, cache) == {"parsed": 1, "version": "1.0.0"}
    assert _child(plugins, cache) == {"parsed": 0, "version": "1.0.0"}


def test_a_changed_file_is_read_again_by_the_next_process(tmp_path: Path) -> None:
    plugins, cache = _plugins(tmp_path), tmp_path / "cache"
    _child(plugins, cache)
    _plugins(tmp_path, version="2.0.0")
    touch_later(plugins / "tidy.py")
    assert _child(plugins, cache) == {"parsed": 1, "version": "2.0.0"}
    assert _child(plugins, cache) == {"parsed": 0, "version": "2.0.0"}


def test_the_cached_classes_equal_the_parsed_ones(tmp_path: Path) -> None:
    plugins, cache = _plugins(tmp_path), tmp_path / "cache"
    first = ModuleRegistry(search_path=[], module_dirs=[plugins], cache_dir=cache)
    second = ModuleRegistry(search_path=[], module_dirs=[plugins], cache_dir=cache)
    fresh = ModuleRegistry(search_path=[], module_dirs=[plugins], disk_cache=False)
    assert first.list() == second.list() == fresh.list()
    assert second.docstring("filters", "tidy") == "Keeps every sequence."


@pytest.mark.parametrize("garbage", [b"", b"not marshal", b"\xe9\x00\x01", None])
def test_a_corrupt_or_foreign_cache_file_counts_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: bytes | None
) -> None:
    import marshal

    plugins, cache = _plugins(tmp_path), tmp_path / "cache"
    cache.mkdir()
    path = scan_cache.cache_file([], [str(plugins)], cache)
    path.write_bytes(marshal.dumps({"x": 1}) if garbage is None else garbage)
    parses = _counting(monkeypatch)
    registry = ModuleRegistry(search_path=[], module_dirs=[plugins], cache_dir=cache)
    assert registry.get_metadata("filters", "tidy").version == "1.0.0"
    assert len(parses) == 1
    assert scan_cache.load(path)  # rewritten, usable again


def test_an_unwritable_cache_directory_costs_speed_not_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = _plugins(tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    parses = _counting(monkeypatch)
    for _ in range(2):
        registry = ModuleRegistry(search_path=[], module_dirs=[plugins], cache_dir=blocked)
        assert registry.get_metadata("filters", "tidy").version == "1.0.0"
    assert len(parses) == 2


def test_the_cache_directory_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for index in range(scan_cache.MAX_CACHE_FILES + 5):
        plugins = tmp_path / f"p{index}"
        plugins.mkdir()
        (plugins / "tidy.py").write_text(MODULE.format(version="1.0.0"))
        ModuleRegistry(search_path=[], module_dirs=[plugins], cache_dir=cache).list()
    kept = [p for p in cache.iterdir() if p.name.startswith("modules-")]
    assert len(kept) == scan_cache.MAX_CACHE_FILES


def test_the_file_depends_on_the_search_path_and_module_dirs(tmp_path: Path) -> None:
    one = scan_cache.cache_file(["a"], ["d"], tmp_path)
    assert one == scan_cache.cache_file(["a"], ["d"], tmp_path)
    assert one != scan_cache.cache_file(["b"], ["d"], tmp_path)
    assert one != scan_cache.cache_file(["a"], ["e"], tmp_path)


def test_the_environment_names_the_cache_and_can_ignore_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins, cache = _plugins(tmp_path), tmp_path / "elsewhere"
    environ = {"PLANFORGE_MODULE_DIRS": str(plugins), "FACTORY_CACHE_DIR": str(cache)}
    ModuleRegistry.from_environment(environ, search_path=[]).list()
    assert [p.name for p in cache.iterdir() if p.name.startswith("modules-")]
    parses = _counting(monkeypatch)
    ModuleRegistry.from_environment(environ, search_path=[]).list()
    assert parses == []
    forced = {**environ, "FACTORY_FORCE_REDISCOVER": "true"}
    ModuleRegistry.from_environment(forced, search_path=[]).list()
    assert len(parses) == 1


def test_a_malformed_cache_setting_is_the_factorys_clear_error(tmp_path: Path) -> None:
    environ = {"FACTORY_FORCE_REDISCOVER": "sometimes", "FACTORY_CACHE_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="FACTORY_FORCE_REDISCOVER='sometimes' is not valid"):
        ModuleRegistry.from_environment(environ, search_path=[])
    plugins = _plugins(tmp_path)
    forced = {**environ, "FACTORY_FORCE_REDISCOVER": "Yes", "PLANFORGE_MODULE_DIRS": str(plugins)}
    assert ModuleRegistry.from_environment(forced, search_path=[]).list()
    assert not list(tmp_path.glob("modules-*"))  # "Yes" is true, as for the factory
