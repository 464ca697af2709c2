"""The batch's JSON Lines OUTPUT: a line per result as it finishes, input order at the end,
a torn last line cut on resume, and finished plans never planned again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planforge.batch import BatchInput, BatchResult, JsonlOutput, OutputExists


def _result(position: int, *, plan: bool = True) -> BatchResult:
    record: dict[str, object] = {
        "id": f"p{position}",
        "index": position,
        "context_digest": f"c{position}",
        "config_digest": "k",
    }
    record["plan" if plan else "error"] = {"n": position}
    return BatchResult(position, f"p{position}", json.dumps(record), None if plan else "Boom")


def _indexes(path: Path) -> list[int]:
    return [json.loads(line)["index"] for line in path.read_text().splitlines()]


def test_results_written_out_of_order_end_in_input_order(tmp_path: Path) -> None:
    output = JsonlOutput(tmp_path / "out.jsonl")
    for position in (2, 0, 3, 1):
        output.write(_result(position))
    assert _indexes(tmp_path / "out.jsonl") == [2, 0, 3, 1]  # durable as they finish
    output.finish()
    assert _indexes(tmp_path / "out.jsonl") == [0, 1, 2, 3]


def test_an_existing_output_is_kept_unless_resumed(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").write_text("{}\n")
    with pytest.raises(OutputExists, match="give --resume"):
        JsonlOutput(tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text() == "{}\n"


def test_resume_cuts_a_torn_line_and_skips_only_finished_plans(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [_result(1).line, _result(0, plan=False).line]
    path.write_text("\n".join(lines) + '\n{"id": "p2", "ind')  # killed mid-write
    output = JsonlOutput(path, resume=True)
    inputs = [BatchInput(n, f"p{n}", {}) for n in range(3)]
    skipped = [output.skip(item, f"c{item.position}", "k") for item in inputs]
    assert skipped == [False, True, False]  # an error is planned again; a plan is not
    assert not output.skip(BatchInput(1, "p1", {}), "c1", "other-config")
    output.write(_result(2))
    output.write(_result(0))
    output.finish()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all("plan" in r for r in records)  # the earlier error line is gone
    assert output.resumed == 1


def test_an_interrupted_output_stays_valid_line_by_line(tmp_path: Path) -> None:
    output = JsonlOutput(tmp_path / "out.jsonl")
    output.write(_result(1))
    output.close()
    assert _indexes(tmp_path / "out.jsonl") == [1]
