from __future__ import annotations

from pathlib import Path

from planforge.factory._locate import ModuleLocator

EXPLODING_INIT = "open({marker!r}, 'w').write('ran')\nraise RuntimeError('imported!')\n"


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nested_module_found_without_running_package_inits(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    site = tmp_path / "site"
    _write(site / "pkg" / "__init__.py", EXPLODING_INIT.format(marker=str(marker)))
    _write(site / "pkg" / "sub" / "__init__.py", EXPLODING_INIT.format(marker=str(marker)))
    target = _write(site / "pkg" / "sub" / "planners.py", "X = 1\n")
    locator = ModuleLocator([str(site)])
    assert locator.locate("pkg.sub.planners") == str(target)
    assert locator.locate("pkg.sub") == str(site / "pkg" / "sub" / "__init__.py")
    assert not marker.exists()


def test_namespace_portions_across_entries_and_regular_package_shadowing(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "ns").mkdir(parents=True)  # namespace portion without the module
    target = _write(two / "ns" / "mod.py")
    assert ModuleLocator([str(one), str(two)]).locate("ns.mod") == str(target)
    # a regular package earlier on the path hides later portions, as in Python
    _write(one / "reg" / "__init__.py")
    _write(two / "reg" / "mod.py")
    assert ModuleLocator([str(one), str(two)]).locate("reg.mod") is None


def test_first_entry_wins_and_package_beats_module(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    first = _write(one / "plug.py")
    _write(two / "plug.py")
    assert ModuleLocator([str(one), str(two)]).locate("plug") == str(first)
    package = _write(two / "both" / "__init__.py")
    _write(two / "both.py")
    assert ModuleLocator([str(two)]).locate("both") == str(package)


def test_compiled_missing_and_invalid_names_give_none(tmp_path: Path) -> None:
    _write(tmp_path / "fast.cpython-311-x86_64-linux-gnu.so")
    _write(tmp_path / "fast.py")  # the extension wins, as for the real import system
    _write(tmp_path / "nspkg" / "inner" / "x.txt")
    _write(tmp_path / "mod.py")
    locator = ModuleLocator([str(tmp_path)])
    assert locator.locate("fast") is None
    assert locator.locate("missing.module") is None
    assert locator.locate("nspkg.inner") is None  # a namespace package has no source
    assert locator.locate("mod.sub") is None  # a module is not a package
    assert locator.locate("bad-name") is None


def test_listings_are_cached_for_the_pass(tmp_path: Path) -> None:
    locator = ModuleLocator([str(tmp_path)])
    assert locator.locate("late") is None
    _write(tmp_path / "late.py")
    assert locator.locate("late") is None  # same pass: the listing is reused
    assert ModuleLocator([str(tmp_path)]).locate("late") == str(tmp_path / "late.py")
    assert str(tmp_path) in locator.directories


def test_a_module_is_resolved_once_per_pass(tmp_path: Path) -> None:
    first = _write(tmp_path / "plug.py")
    locator = ModuleLocator([str(tmp_path)])
    assert locator.locate("plug") == str(first)
    first.unlink()
    _write(tmp_path / "plug" / "__init__.py")
    assert locator.locate("plug") == str(first)  # the pass keeps its first answer
    fresh = ModuleLocator([str(tmp_path)]).locate("plug")
    assert fresh == str(tmp_path / "plug" / "__init__.py")


def test_a_listing_handed_over_by_the_scan_is_used_instead_of_listing_again(
    tmp_path: Path,
) -> None:
    from planforge.factory._entrypoints import scan_entry_points

    site = tmp_path / "site"
    target = _write(site / "plugin.py")
    listings: dict[str, list[str]] = {}
    scan_entry_points(
        "planforge.planners", [str(site), str(tmp_path / "missing")], listings=listings
    )
    assert listings == {str(site): ["plugin.py"]}  # a missing entry has no listing
    target.unlink()  # the pass believes its own listing, as one directory walk would
    locator = ModuleLocator([str(site)], listings=listings)
    assert locator.locate("plugin") == str(target)
    assert locator.directories == (str(site),)
    # without the handed-over listing the locator lists the directory itself
    assert ModuleLocator([str(site)]).locate("plugin") is None
