from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from planforge.contract import PlannerSpec, spec_from_attributes
from planforge.errors import SandboxImportError
from planforge.factory._discovery import (
    NEEDS_SANDBOX,
    Discovery,
    DiscoveryResult,
    IntrospectionTarget,
)
from planforge.factory._pycache import cached_code
from planforge.settings import FactorySettings, load_settings
from tests.factory._dists import (
    ATTRIBUTES,
    add_dist,
    planner_source,
    rewrite_keeping_stamp,
    touch_later,
)

EP = "[planforge.planners]\n"


class RecordingIntrospector:
    """Stands in for the sandbox: records what it is asked and answers from a table."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any] | Exception]) -> None:
        self.answers = answers
        self.calls: list[IntrospectionTarget] = []

    def __call__(self, target: IntrospectionTarget) -> Mapping[str, Any]:
        self.calls.append(target)
        answer = self.answers[f"{target.module}:{target.qualname}"]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(
    tmp_path: Path,
    site: Path,
    *,
    plugin_dirs: tuple[Path, ...] = (),
    introspect: RecordingIntrospector | None = None,
    **overrides: Any,
) -> Discovery:
    options: dict[str, Any] = {
        "plugin_dirs": plugin_dirs,
        "cache_dir": None,
        "force_rediscover": False,
        "deep_fingerprint": True,
        **overrides,
    }
    settings: FactorySettings = load_settings(**options)
    return Discovery(
        settings, search_path=[str(site)], cache_dir=tmp_path / "cache", introspect=introspect
    )


def names(result: DiscoveryResult) -> list[str]:
    return [spec.name for spec in result.specs]


def test_entry_point_planner_read_from_source_with_every_field(tmp_path: Path) -> None:
    site = tmp_path / "site"
    add_dist(
        site,
        "alpha-plugin",
        EP + "alpha = alpha_pkg.planners:Alpha\n",
        modules={"alpha_pkg/__init__.py": "", "alpha_pkg/planners.py": planner_source()},
    )
    result = make(tmp_path, site).discover()
    (spec,) = result.specs
    path = site / "alpha_pkg" / "planners.py"
    info = path.stat()
    expected = spec_from_attributes(
        ATTRIBUTES,
        target="alpha_pkg.planners:Alpha",
        source="entry_point",
        origin="alpha-plugin",
        path=str(path),
        fingerprint=f"{info.st_size}:{info.st_mtime_ns}",
    )
    assert spec == expected
    assert spec.metadata_from == "ast"
    assert result.problems == ()
    assert (result.from_cache, result.modules_read, result.distributions_scanned) == (False, 1, 1)


def test_packages_are_not_imported_and_importlib_metadata_stays_out(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    boom = f"open({str(marker)!r}, 'w').write('ran')\nraise RuntimeError('imported')\n"
    site = tmp_path / "site"
    add_dist(
        site,
        "boom",
        EP + "boom = boom_pkg.sub.planners:Alpha\n",
        modules={
            "boom_pkg/__init__.py": boom,
            "boom_pkg/sub/__init__.py": boom,
            "boom_pkg/sub/planners.py": planner_source() + boom,
        },
    )
    # pydantic (under planforge.contract) imports importlib.metadata itself, so the child
    # poisons it after that import: any use by discovery would then raise.
    code = (
        "import json, sys, importlib\n"
        "from pathlib import Path\n"
        "from planforge.settings import load_settings\n"
        "for name in [m for m in sys.modules if m.startswith('importlib.metadata')]:\n"
        "    del sys.modules[name]\n"
        "sys.modules['importlib.metadata'] = None\n"
        "del importlib.metadata\n"
        "from planforge.factory._discovery import Discovery\n"
        "d = Discovery(load_settings(plugin_dirs=()), search_path=[sys.argv[1]],"
        " cache_dir=Path(sys.argv[2]))\n"
        "r = d.discover()\n"
        "print(json.dumps({'names': [s.name for s in r.specs],"
        " 'metadata': sys.modules['importlib.metadata'] is not None,"
        " 'boom': 'boom_pkg' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    output = subprocess.run(
        [sys.executable, "-c", code, str(site), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    report = json.loads(output)
    assert report == {"names": ["alpha"], "metadata": False, "boom": False}
    assert not marker.exists()


def test_plugin_directory_planners_with_inheritance(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "family.py").write_text(
        "from planforge.contract import Planner\n\n"
        "class Base(Planner):\n    tier = 'gold'\n\n"
        "class One(Base):\n    name = 'one'\n\n"
        "class Two(Base):\n    name = 'two'\n    tier = 'alpha'\n\n"
        "class Helper:\n    name = 'not-a-planner'\n"
    )
    (plugins / "notes.txt").write_text("ignored")
    result = make(tmp_path, tmp_path / "empty", plugin_dirs=(plugins,)).discover()
    assert [(s.name, s.tier, s.target, s.source, s.origin) for s in result.specs] == [
        ("one", "gold", "family:One", "directory", str(plugins)),
        ("two", "alpha", "family:Two", "directory", str(plugins)),
    ]
    assert result.problems == ()


def test_non_literal_metadata_goes_to_introspect_once_per_file_change(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    plugin = plugins / "dyn.py"
    plugin.write_text(
        "import sys\nsys.exit('must never run')\nfrom planforge.contract import Planner\n\n"
        "class Dyn(Planner):\n    name = compute_name()\n"
    )
    introspector = RecordingIntrospector({"dyn:Dyn": {"name": "dyn", "tier": "stable"}})
    discovery = make(tmp_path, tmp_path / "site", plugin_dirs=(plugins,), introspect=introspector)
    result = discovery.discover()
    assert [(s.name, s.metadata_from, s.path) for s in result.specs] == [
        ("dyn", "sandbox", str(plugin))
    ]
    assert introspector.calls == [
        IntrospectionTarget("dyn", "Dyn", str(plugin), str(plugins), "directory")
    ]
    (plugins / "other.py").write_text("X = 1\n")  # the tree changed, dyn.py did not
    again = make(tmp_path, tmp_path / "site", plugin_dirs=(plugins,), introspect=introspector)
    assert names(again.discover()) == ["dyn"]
    assert len(introspector.calls) == 1
    touch_later(plugin)
    assert names(again.discover()) == ["dyn"]
    assert len(introspector.calls) == 2


def test_without_introspect_or_when_it_fails_the_class_is_a_problem(tmp_path: Path) -> None:
    site = tmp_path / "site"
    add_dist(
        site,
        "dyn",
        EP + "a = dyn_a:A\nb = dyn_b:B\n",
        modules={
            "dyn_a.py": "class A(Planner):\n    name = NAME\n",
            "dyn_b.py": "class B(Planner):\n    name = NAME\n",
        },
    )
    result = make(tmp_path, site).discover()
    assert result.specs == ()
    assert [(p.target, NEEDS_SANDBOX in p.reason) for p in result.problems] == [
        ("dyn_a:A", True),
        ("dyn_b:B", True),
    ]
    failing = RecordingIntrospector(
        {"dyn_a:A": SandboxImportError("dyn_a", "it raised"), "dyn_b:B": {"name": "b"}}
    )
    result = make(tmp_path, site, introspect=failing).discover(force=True)
    assert names(result) == ["b"]
    (problem,) = result.problems
    assert problem.target == "dyn_a:A"
    assert "it raised" in problem.reason


def test_invalid_metadata_and_broken_sources_are_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    add_dist(
        site,
        "mixed",
        EP
        + "bad_tier = bad_tier:P\n"
        + "syntax = broken:P\n"
        + "missing_module = nowhere.at.all:P\n"
        + "missing_class = good:Nope\n"
        + "module_only = good\n"
        + "good = good:Good\n"
        + "this line is malformed\n",
        modules={
            "bad_tier.py": planner_source("P", tier="platinum"),
            "broken.py": "class P(Planner:\n",
            "good.py": planner_source("Good", name="good"),
        },
    )
    result = make(tmp_path, site).discover()
    assert names(result) == ["good"]
    reasons = {p.target: p.reason for p in result.problems}
    assert "'tier'" in reasons["bad_tier:P"]
    assert "platinum" in reasons["bad_tier:P"]
    assert "syntax error" in reasons["broken:P"]
    assert "source file was not found" in reasons["nowhere.at.all:P"]
    assert "class Nope not found" in reasons["good:Nope"]
    assert "module:Class" in reasons["module_only = good"]
    assert any("malformed entry point line" in reason for reason in reasons.values())


def test_a_plugin_file_python_cannot_compile_is_broken_never_healthy(tmp_path: Path) -> None:
    """Its class statements and literal metadata look fine; a method does not compile."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    source = planner_source("Broken", name="broken")
    source += "\n    def plan(self o c):\n        return None\n"
    (plugins / "broken.py").write_text(source)
    (plugins / "fine.py").write_text(planner_source("Fine", name="fine"))
    line = source.split("def plan(self o c)")[0].count("\n") + 1
    for force in (False, True):  # the cold pass and the pass that reads it again
        result = make(tmp_path, tmp_path / "site", plugin_dirs=(plugins,)).discover(force=force)
        assert names(result) == ["fine"]
        (problem,) = result.problems
        assert (problem.source, problem.target) == ("directory", "broken:*")
        assert f"line {line}" in problem.reason
        assert "syntax error" in problem.reason
    warm = make(tmp_path, tmp_path / "site", plugin_dirs=(plugins,)).discover()
    assert warm.from_cache
    assert [p.target for p in warm.problems] == ["broken:*"]


def test_fresh_bytecode_gives_the_same_specs_and_never_hides_a_broken_edit(
    tmp_path: Path,
) -> None:
    """pip compiles what it installs: discovery then reads the bytecode, with the same result;
    an edit that breaks the file leaves that bytecode stale, and the file is reported broken."""
    site = tmp_path / "site"
    add_dist(
        site, "alpha", EP + "alpha = alpha_mod:Alpha\n", modules={"alpha_mod.py": planner_source()}
    )
    module = site / "alpha_mod.py"
    from_source = make(tmp_path, site).discover(force=True)
    py_compile.compile(str(module), doraise=True)
    info = module.stat()
    assert cached_code(str(module), info.st_size, info.st_mtime_ns) is not None
    from_bytecode = make(tmp_path, site).discover(force=True)
    assert from_bytecode.specs == from_source.specs
    assert from_bytecode.problems == ()
    broken = planner_source() + "\n    def plan(self o c):\n        return None\n"
    module.write_text(broken)
    result = make(tmp_path, site).discover(force=True)
    assert result.specs == ()
    (problem,) = result.problems
    assert f"syntax error at line {broken.count(chr(10)) - 1}" in problem.reason


def test_duplicate_names_follow_the_documented_rule(tmp_path: Path) -> None:
    site = tmp_path / "site"
    add_dist(site, "zeta", EP + "dup = zeta_mod:Z\n", modules={"zeta_mod.py": planner_source("Z")})
    add_dist(site, "beta", EP + "dup = beta_mod:B\n", modules={"beta_mod.py": planner_source("B")})
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "a_plugin.py").write_text(planner_source("Second"))
    (first / "z_plugin.py").write_text(planner_source("First"))
    discovery = make(tmp_path, site, plugin_dirs=(first, second))
    result = discovery.discover()
    (winner,) = result.specs
    assert (winner.target, winner.source) == ("z_plugin:First", "directory")
    assert [(s.loser_target, s.loser_source, s.winner_target) for s in result.shadowed] == [
        ("a_plugin:Second", "directory", "z_plugin:First"),
        ("beta_mod:B", "entry_point", "z_plugin:First"),
        ("zeta_mod:Z", "entry_point", "z_plugin:First"),
    ]
    code = PlannerSpec(**{**winner.to_dict(), "target": "app:Code", "source": "code"})
    with_code = discovery.discover(code_specs=[code])
    assert with_code.from_cache
    assert [s.target for s in with_code.specs] == ["app:Code"]
    assert {s.winner_target for s in with_code.shadowed} == {"app:Code"}
    assert len(with_code.shadowed) == 4
    assert discovery.discover().specs == result.specs  # code specs are never cached


def test_cache_hit_reads_no_file_and_mtime_change_rereads(tmp_path: Path) -> None:
    site = tmp_path / "site"
    module = site / "cached.py"
    add_dist(site, "cached", EP + "c = cached:C\n", modules={"cached.py": planner_source("C")})
    first = make(tmp_path, site).discover()
    assert first.specs[0].description == "Alpha planner"
    rewrite_keeping_stamp(module, module.read_text().replace("Alpha planner", "Omega planner"))
    warm = make(tmp_path, site).discover()
    assert (warm.from_cache, warm.modules_read) == (True, 0)
    assert warm.specs[0].description == "Alpha planner"  # served from the cache, unread
    assert warm.fingerprint == first.fingerprint
    touch_later(module)
    changed = make(tmp_path, site).discover()
    assert (changed.from_cache, changed.modules_read) == (False, 1)
    assert changed.specs[0].description == "Omega planner"
    assert changed.fingerprint != first.fingerprint
    forced = make(tmp_path, site).discover(force=True)
    assert not forced.from_cache
    assert not make(tmp_path, site, force_rediscover=True).discover().from_cache


def test_names_only_fingerprint_ignores_content_but_sees_new_files(tmp_path: Path) -> None:
    site = tmp_path / "site"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    plugin = plugins / "p.py"
    plugin.write_text(planner_source("P", name="p"))
    discovery = make(tmp_path, site, plugin_dirs=(plugins,), deep_fingerprint=False)
    assert names(discovery.discover()) == ["p"]
    plugin.write_text(planner_source("P", name="renamed"))
    touch_later(plugin)
    stale = make(tmp_path, site, plugin_dirs=(plugins,), deep_fingerprint=False).discover()
    assert (stale.from_cache, names(stale)) == (True, ["p"])
    (plugins / "q.py").write_text(planner_source("Q", name="q"))
    fresh = make(tmp_path, site, plugin_dirs=(plugins,), deep_fingerprint=False).discover()
    assert (fresh.from_cache, names(fresh)) == (False, ["q", "renamed"])
    add_dist(
        site, "newdist", EP + "n = n_mod:N\n", modules={"n_mod.py": planner_source("N", name="n")}
    )
    installed = make(tmp_path, site, plugin_dirs=(plugins,), deep_fingerprint=False).discover()
    assert names(installed) == ["n", "q", "renamed"]


@pytest.mark.parametrize("garbage", [b"", b"\x00garbage", b"\xe9" * 64])
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, garbage: bytes) -> None:
    site = tmp_path / "site"
    add_dist(site, "c", EP + "c = c_mod:C\n", modules={"c_mod.py": planner_source("C")})
    discovery = make(tmp_path, site)
    first = discovery.discover()
    discovery.cache_file().write_bytes(garbage)
    recovered = make(tmp_path, site).discover()
    assert (recovered.from_cache, names(recovered)) == (False, ["alpha"])
    assert recovered.fingerprint == first.fingerprint
    assert make(tmp_path, site).discover().from_cache


def test_results_are_deterministic(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for index in (3, 1, 2):
        add_dist(
            site,
            f"d{index}",
            EP + f"p{index} = m{index}:P\n",
            modules={f"m{index}.py": planner_source("P", name=f"p{index}")},
        )
    one = make(tmp_path, site).discover(force=True)
    two = make(tmp_path / "other", site).discover(force=True)
    assert names(one) == ["p1", "p2", "p3"]
    assert (one.specs, one.problems, one.fingerprint) == (two.specs, two.problems, two.fingerprint)


def test_reinstall_is_noticed_but_an_in_place_entry_points_edit_needs_force(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    modules = {"one.py": planner_source("One", name="one"), "two.py": planner_source("T")}
    info = add_dist(site, "plug", EP + "one = one:One\n", modules=modules)
    assert names(make(tmp_path, site).discover()) == ["one"]
    # an installer removes the old *.dist-info directory and writes a new one
    shutil.rmtree(info)
    touch_later(site)  # coarse filesystem clocks: make the directory change visible
    add_dist(site, "plug", EP + "one = one:One\ntwo = two:T\n")
    reinstalled = make(tmp_path, site).discover()
    assert (reinstalled.from_cache, names(reinstalled)) == (False, ["alpha", "one"])
    # a hand edit inside the installed directory is not stamped (see the module docstring)
    (info / "entry_points.txt").write_text(EP + "one = one:One\n")
    stale = make(tmp_path, site).discover()
    assert (stale.from_cache, names(stale)) == (True, ["alpha", "one"])
    assert names(make(tmp_path, site).discover(force=True)) == ["one"]


def test_fingerprint_is_the_same_when_unchanged_files_come_from_the_last_pass(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    for index in range(3):
        add_dist(
            site,
            f"d{index}",
            EP + f"p{index} = m{index}:P\n",
            modules={f"m{index}.py": planner_source("P", name=f"p{index}")},
        )
    first = make(tmp_path, site).discover()
    add_dist(site, "unrelated", None)  # the directory changes, no module does
    touch_later(site)
    second = make(tmp_path, site).discover()
    assert (second.from_cache, second.modules_read) == (False, 0)
    assert second.specs == first.specs
    again = make(tmp_path / "elsewhere", site).discover()  # every file read afresh
    assert again.modules_read == 3
    assert again.fingerprint == second.fingerprint


def test_truncated_cache_is_a_miss(tmp_path: Path) -> None:
    site = tmp_path / "site"
    add_dist(site, "c", EP + "c = c_mod:C\n", modules={"c_mod.py": planner_source("C")})
    discovery = make(tmp_path, site)
    first = discovery.discover()
    cache = discovery.cache_file()
    data = cache.read_bytes()
    for cut in (len(data) // 2, 40, 3):
        cache.write_bytes(data[:cut])
        again = make(tmp_path, site).discover()
        assert (again.from_cache, again.fingerprint) == (False, first.fingerprint)
    assert make(tmp_path, site).discover().from_cache


def test_a_declared_context_kind_survives_the_cache(tmp_path: Path) -> None:
    site = tmp_path / "site"
    source = planner_source("K", name="k", context_kind="portfolio")
    add_dist(site, "k", EP + "k = k_mod:K\n", modules={"k_mod.py": source})
    cold = make(tmp_path, site).discover()
    warm = make(tmp_path, site).discover()
    assert [(s.name, s.context_kind) for s in cold.specs] == [("k", "portfolio")]
    assert (warm.from_cache, warm.specs) == (True, cold.specs)


def _as_previous_format(cache: Path) -> None:
    """Rewrite a cache file as the format before context kinds: its magic and format number,
    spec rows without the last field, and per-file attributes read without `context_kind`."""
    import marshal

    from planforge.factory import _cache as module

    data = cache.read_bytes()
    header = len(module.MAGIC) + 16 + 8
    fingerprint = data[len(module.MAGIC) : len(module.MAGIC) + 16]
    size = int.from_bytes(data[header - 8 : header], "little")
    _fmt, check, rows, problems, shadowed, scanned = marshal.loads(data[header : header + size])
    files, introspected = marshal.loads(data[header + size :])
    old_rows = tuple(row[:-1] for row in rows)
    old_files = {
        path: (
            stamp,
            tuple(
                (
                    name,
                    is_planner,
                    is_base,
                    {k: v for k, v in (attrs or {}).items() if k != "context_kind"} or attrs,
                    reason,
                )
                for name, is_planner, is_base, attrs, reason in classes
            ),
        )
        for path, (stamp, classes) in files.items()
    }
    core = marshal.dumps((2, check, old_rows, problems, shadowed, scanned), 4)
    cache.write_bytes(
        b"planforge-discovery-2\n"
        + fingerprint
        + len(core).to_bytes(8, "little")
        + core
        + marshal.dumps((old_files, introspected))
    )


def test_a_cache_of_the_previous_format_is_read_again_never_misread(tmp_path: Path) -> None:
    site = tmp_path / "site"
    source = planner_source("K", name="k", context_kind="portfolio")
    add_dist(site, "k", EP + "k = k_mod:K\n", modules={"k_mod.py": source})
    discovery = make(tmp_path, site)
    discovery.discover()
    _as_previous_format(discovery.cache_file())
    again = make(tmp_path, site).discover()
    # neither the old spec rows nor the old per-file attributes (which never held the
    # context kind) are trusted: the module is read again
    assert (again.from_cache, again.modules_read) == (False, 1)
    assert [(s.name, s.context_kind) for s in again.specs] == [("k", "portfolio")]
    assert make(tmp_path, site).discover().from_cache
