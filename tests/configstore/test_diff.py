"""Text and semantic diffs between planner configurations."""

from __future__ import annotations

import json

import pytest

from planforge.configstore._diff import (
    ParamChange,
    PlannerChange,
    semantic_diff,
    unified_diff,
)
from planforge.holistic.errors import ConfigError

BASE = """\
[planner]
max_depth = 4

[opportunity_calculators.profit_taking]
enabled = true

[pattern_generators.direct_buy]
enabled = true

[sequence_generators.combinatorial]
enabled = true
"""


def test_identical_documents_have_no_difference() -> None:
    assert unified_diff(BASE, BASE) == ""
    diff = semantic_diff(BASE, BASE)
    assert diff.is_empty
    assert diff.lines() == []


def test_unified_diff_shows_changed_lines_with_labels() -> None:
    changed = BASE.replace("max_depth = 4", "max_depth = 6")
    text = unified_diff(BASE, changed, a_label="core v1", b_label="core v2")
    lines = text.splitlines()
    assert lines[0] == "--- core v1"
    assert lines[1] == "+++ core v2"
    assert "-max_depth = 4" in lines
    assert "+max_depth = 6" in lines


def test_unified_diff_marks_a_missing_final_newline() -> None:
    text = unified_diff("a = 1\n", "a = 2")
    assert "+a = 2\n\\ No newline at end of file\n" in text


def test_comments_order_and_explicit_defaults_are_no_semantic_difference() -> None:
    rewritten = """\
# the same configuration, written differently
[sequence_generators.combinatorial]
enabled = true

[pattern_generators.direct_buy]
enabled = true

[opportunity_calculators.profit_taking]
enabled = true

[opportunity_calculators.averaging_down]
enabled = false  # disabled modules do not run

[planner]
max_depth = 4
beam_width = 10  # the default
"""
    assert unified_diff(BASE, rewritten) != ""
    assert semantic_diff(BASE, rewritten).is_empty


def test_modules_enabled_and_disabled_are_listed_sorted() -> None:
    other = """\
[planner]
max_depth = 4

[opportunity_calculators.weight_based]
enabled = true

[opportunity_calculators.averaging_down]
enabled = true

[pattern_generators.direct_buy]
enabled = true

[sequence_generators.combinatorial]
enabled = true

[opportunity_calculators.profit_taking]
enabled = false
"""
    diff = semantic_diff(BASE, other)
    assert diff.modules_enabled == (
        "opportunity_calculators.averaging_down",
        "opportunity_calculators.weight_based",
    )
    assert diff.modules_disabled == ("opportunity_calculators.profit_taking",)
    assert diff.params_changed == ()
    assert diff.planner_changed == ()
    reverse = semantic_diff(other, BASE)
    assert reverse.modules_enabled == diff.modules_disabled
    assert reverse.modules_disabled == diff.modules_enabled


def test_param_changes_carry_old_and_new_values_with_defaults_filled_in() -> None:
    other = BASE + ("\n[opportunity_calculators.profit_taking.params]\nwindfall_threshold = 0.45\n")
    diff = semantic_diff(BASE, other)
    assert len(diff.params_changed) == 1
    change = diff.params_changed[0]
    assert change.module == "opportunity_calculators.profit_taking"
    assert change.param == "windfall_threshold"
    assert change.new == 0.45
    assert isinstance(change.old, float)
    assert change.old != 0.45
    assert diff.modules_enabled == ()
    assert diff.planner_changed == ()


def test_planner_keys_changed_include_engine_and_domain_keys() -> None:
    other = BASE.replace("max_depth = 4", "max_depth = 4\nbeam_width = 12\nmax_loss = -0.3")
    diff = semantic_diff(BASE, other)
    keys = [change.key for change in diff.planner_changed]
    assert keys == sorted(keys)
    assert PlannerChange("beam_width", 10, 12) in diff.planner_changed
    assert any(c.key == "max_loss" and c.new == -0.3 for c in diff.planner_changed)


def test_a_disabled_modules_params_are_not_compared() -> None:
    a = BASE + "\n[filters.diversity]\nenabled = false\n"
    b = BASE + "\n[filters.diversity]\nenabled = false\n[filters.diversity.params]\nx = 1\n"
    assert semantic_diff(a, b).is_empty


def test_to_dict_is_json_ready_and_lines_read_well() -> None:
    other = BASE.replace("max_depth = 4", "max_depth = 7") + (
        "\n[filters.eligibility]\nenabled = true\n"
    )
    diff = semantic_diff(BASE, other)
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["modules_enabled"] == ["filters.eligibility"]
    assert data["planner_changed"] == [{"key": "max_depth", "old": 4, "new": 7}]
    assert data["is_empty"] is False
    assert "+ enabled  filters.eligibility" in diff.lines()
    assert "~ planner.max_depth: 4 -> 7" in diff.lines()


def test_param_change_is_a_plain_tuple() -> None:
    change = ParamChange("filters.eligibility", "max_loss", -0.2, -0.3)
    module, param, old, new = change
    assert (module, param, old, new) == ("filters.eligibility", "max_loss", -0.2, -0.3)


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ("[planner\nmax_depth = 4\n", None),
        ("[opportunity_calculators.no_such_module]\nenabled = true\n", None),
        ("[planner]\nmax_depth = 'deep'\n", "planner.max_depth"),
    ],
)
def test_an_invalid_side_is_a_config_error_naming_it(bad: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        semantic_diff(BASE, bad, b_label="candidate.toml")
    assert caught.value.source == "candidate.toml"
    assert "candidate.toml" in caught.value.message
    if key is not None:
        assert caught.value.key == key


def test_stored_versions_are_labelled_by_name_version_and_id() -> None:
    from datetime import UTC, datetime

    from planforge.configstore import ConfigVersion

    def version(number: int, text: str) -> ConfigVersion:
        return ConfigVersion(
            id=10 + number, name="core", title="Core", description=None, toml=text,
            digest=str(number), version=number, active=False,
            created_at=datetime(2025, 1, number, tzinfo=UTC), created_by="ana", parent_id=None,
        )  # fmt: skip

    old, new = version(1, BASE), version(2, BASE.replace("max_depth = 4", "max_depth = 2"))
    assert unified_diff(old, new).startswith("--- core v1 (#11)\n+++ core v2 (#12)\n")
    assert semantic_diff(old, new).planner_changed == (PlannerChange("max_depth", 4, 2),)
    with pytest.raises(ConfigError, match=r"core v2 \(#12\)"):
        semantic_diff(old, version(2, "[planner]\nmax_depth = 0\n"))
