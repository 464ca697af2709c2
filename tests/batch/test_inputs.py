"""Reading a batch's inputs: directories, JSON Lines, Python values; bad inputs carry their
problem instead of stopping the batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planforge.batch import (
    BatchInput,
    config_digest,
    context_digest,
    generated_inputs,
    inputs_from,
    read_inputs,
)


def test_a_directory_is_read_in_file_name_order_with_stems_as_ids(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"cash": 2}))
    (tmp_path / "a.toml").write_text("cash = 1\n")
    (tmp_path / "notes.txt").write_text("not an input")
    inputs = list(read_inputs(tmp_path))
    assert [(i.position, i.id, i.context) for i in inputs] == [
        (0, "a", {"cash": 1}),
        (1, "b", {"cash": 2}),
    ]


def test_a_bad_file_is_an_input_with_its_problem_and_the_rest_still_read(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text("[1, 2]")
    (tmp_path / "c.json").write_text(json.dumps({"cash": 3}))
    (tmp_path / "c.toml").write_text("cash = 4\n")
    first, second, third, fourth = read_inputs(tmp_path)
    assert first.context is None
    assert "a.json: not valid JSON" in (first.problem or "")
    assert "must hold a JSON object" in (second.problem or "")
    assert third.context == {"cash": 3}
    assert third.problem is None
    assert "another file has the id 'c'" in (fourth.problem or "")


def test_json_lines_carry_ids_and_per_input_choices(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "alice", "context": {"cash": 1}, "config": "conservative"}),
        "",
        json.dumps({"id": 7, "context": {"cash": 2}, "objective": "Raise cash"}),
        "{broken",
        json.dumps({"context": {"cash": 3}}),
        json.dumps({"id": "bob", "context": [1]}),
        json.dumps({"id": "carol", "context": {}, "config": 5}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    inputs = list(read_inputs(source))
    assert [i.position for i in inputs] == list(range(6))
    assert inputs[0] == BatchInput(0, "alice", {"cash": 1}, config="conservative")
    assert (inputs[1].id, inputs[1].objective) == ("7", "Raise cash")
    assert inputs[2].id == "line-4"
    assert "line 4: not valid JSON" in (inputs[2].problem or "")
    assert 'line 5: no "id"' in (inputs[3].problem or "")
    assert '"context" must be an object' in (inputs[4].problem or "")
    assert "'config' must be a string" in (inputs[5].problem or "")


def test_a_missing_input_names_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="directory of context files"):
        read_inputs(tmp_path / "nowhere")


def test_python_inputs_take_contexts_pairs_and_records() -> None:
    items = [{"cash": 1}, ("x", {"cash": 2}), {"id": "y", "context": {"cash": 3}}, 5]
    made = list(inputs_from(items))
    assert [(i.id, i.context) for i in made[:3]] == [
        ("1", {"cash": 1}),
        ("x", {"cash": 2}),
        ("y", {"cash": 3}),
    ]
    assert made[3].context is None
    assert "is a int, not a context mapping" in (made[3].problem or "")


def test_digests_do_not_depend_on_key_order_and_presets_stand_for_their_text() -> None:
    assert context_digest({"a": 1, "b": [1, 2]}) == context_digest({"b": [1, 2], "a": 1})
    assert context_digest({"a": 1}) != context_digest({"a": 2})
    from planforge.portfolio.planner import preset_text

    assert config_digest("conservative") == config_digest(preset_text("conservative"))
    assert config_digest("conservative") != config_digest("default")
    assert config_digest(None) == "planner-default"


def test_generated_inputs_are_the_same_in_every_call() -> None:
    first = [(i.id, context_digest(i.context)) for i in generated_inputs(5, seed=3)]
    again = [(i.id, context_digest(i.context)) for i in generated_inputs(5, seed=3)]
    other = [(i.id, context_digest(i.context)) for i in generated_inputs(5, seed=4)]
    assert first == again
    assert first != other
    assert [ident for ident, _ in first] == ["p000001", "p000002", "p000003", "p000004", "p000005"]
