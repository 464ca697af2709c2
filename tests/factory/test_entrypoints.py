from __future__ import annotations

from pathlib import Path

from planforge.factory._entrypoints import (
    normalise_dist_name,
    parse_entry_points,
    scan_entry_points,
)
from tests.factory._dists import add_dist

GROUP = "planforge.planners"


def test_parse_reads_only_the_group_with_comments_and_extras() -> None:
    text = (
        "# leading comment\n"
        "[console_scripts]\n"
        "tool = pkg.cli:main\n"
        "\n"
        "[ planforge.planners ]\n"
        "; another comment style\n"
        "alpha = pkg.planners:Alpha\n"
        "beta=pkg.planners:Beta [fast, extra]\n"
        "[other]\n"
        "gamma = pkg:Gamma\n"
    )
    entries, problems = parse_entry_points(text, GROUP)
    assert entries == [
        (7, "alpha", "pkg.planners:Alpha"),
        (8, "beta", "pkg.planners:Beta [fast, extra]"),
    ]
    assert problems == []


def test_parse_reports_malformed_lines_with_line_numbers() -> None:
    text = (
        "[planforge.planners]\n"
        "no equals sign here\n"
        "= pkg:NoName\n"
        "empty =\n"
        "bad = pkg:Cls:Extra\n"
        "good = pkg:Good\n"
        "[console_scripts]\n"
        "broken line outside our group\n"
    )
    entries, problems = parse_entry_points(text, GROUP)
    assert entries == [(6, "good", "pkg:Good")]
    assert [line for line, _ in problems] == [2, 3, 4, 5]
    assert "pkg:Cls:Extra" in problems[3][1]


def test_normalised_names_follow_pep_503() -> None:
    assert normalise_dist_name("My_Plugin.Name") == "my-plugin-name"
    assert normalise_dist_name("a--b__c") == "a-b-c"


def test_scan_finds_group_first_distribution_wins_and_skips_files(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    add_dist(first, "My_Plugin", "[planforge.planners]\na = one:A\n")
    add_dist(second, "my-plugin", "[planforge.planners]\nb = two:B\n", version="2.0")
    add_dist(second, "other", "[console_scripts]\nx = other:main\n")
    add_dist(second, "nothing", None)
    zipped = tmp_path / "lib.zip"
    zipped.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    scan = scan_entry_points(
        GROUP, [str(first), str(zipped), str(tmp_path / "missing"), str(second)]
    )
    assert [(d.dist, [e.name for e in d.entries]) for d in scan.dists] == [("my-plugin", ["a"])]
    assert scan.distributions_scanned == 3  # my-plugin once, other, nothing
    entry = scan.dists[0].entries[0]
    assert (entry.module, entry.attr) == ("one", "A")
    assert scan.problems == ()


def test_scan_reports_problems_for_malformed_group_lines(tmp_path: Path) -> None:
    add_dist(tmp_path, "broken", "[planforge.planners]\nthis is not an entry\nok = m:Ok\n")
    scan = scan_entry_points(GROUP, [str(tmp_path)])
    assert [e.name for e in scan.dists[0].entries] == ["ok"]
    (problem,) = scan.problems
    assert (problem.dist, problem.line) == ("broken", 2)
    assert problem.file.endswith("entry_points.txt")


def test_spellings_of_one_name_in_one_directory_count_once(tmp_path: Path) -> None:
    # the fast spellings (underscores only) and the regex ones must agree on the name
    add_dist(tmp_path, "Foo_Bar", "[planforge.planners]\nwinner = upper:W\n", version="2.0")
    add_dist(tmp_path, "foo__bar", "[planforge.planners]\nloser = lower:L\n")
    add_dist(tmp_path, "foo.bar", "[planforge.planners]\nloser = dotted:L\n", version="3.0")
    add_dist(tmp_path, "baz_qux", "[planforge.planners]\nother = baz:Q\n")
    scan = scan_entry_points(GROUP, [str(tmp_path)])
    assert [(d.dist, [e.name for e in d.entries]) for d in scan.dists] == [
        ("foo-bar", ["winner"]),
        ("baz-qux", ["other"]),
    ]
    assert scan.distributions_scanned == 2


def test_large_entry_points_file_is_read_whole(tmp_path: Path) -> None:
    filler = "".join(f"tool{i} = pkg.cli:main{i}\n" for i in range(6000))  # well over 64 KiB
    add_dist(tmp_path, "big", f"[console_scripts]\n{filler}[planforge.planners]\nlast = m:Last\n")
    (dist,) = scan_entry_points(GROUP, [str(tmp_path)]).dists
    assert [(e.name, e.line) for e in dist.entries] == [("last", 6003)]


def test_metadata_directory_without_a_version_is_named_by_its_stem(tmp_path: Path) -> None:
    # `legacy.egg-info` names `legacy`, as importlib.metadata reads it, not `legacy-egg`
    info = tmp_path / "legacy.egg-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[planforge.planners]\nold = legacy:Old\n")
    add_dist(tmp_path, "legacy", "[planforge.planners]\nnew = legacy2:New\n", version="2.0")
    (dist,) = scan_entry_points(GROUP, [str(tmp_path)]).dists
    assert dist.dist == "legacy"
    assert [e.name for e in dist.entries] == ["new"]  # `legacy-2.0.dist-info` sorts first
