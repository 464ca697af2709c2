from __future__ import annotations

from pathlib import Path

from planforge.factory.entrypoints import (
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
