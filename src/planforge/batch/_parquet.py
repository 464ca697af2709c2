"""A finished batch as Parquet (the `batch` extra: pyarrow): one row per step, and a plans table.

The JSON Lines file stays the batch's record (it is what `--resume` reads); the Parquet files
are made from it at the end, a few thousand lines at a time, so memory stays bounded.
Portfolio steps' usual parameters (symbol, quantity, value) get columns of their own; every
step also keeps all its parameters as JSON, so no planner's data is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

__all__ = ["parquet_paths", "write_parquet"]

_ROWS_PER_GROUP: Final = 2_000


def parquet_paths(output: Path) -> tuple[Path, Path, Path]:
    """(JSON Lines record, steps table, plans table) for a `.parquet` OUTPUT."""
    return output.with_suffix(".jsonl"), output, output.with_suffix(".plans.parquet")


def _schemas() -> tuple[Any, Any]:
    import pyarrow as pa

    text, number, names = pa.string(), pa.float64(), pa.list_(pa.string())
    steps = pa.schema(
        [
            ("id", text), ("index", pa.int64()), ("plan_id", text), ("step", text),
            ("action", text), ("symbol", text), ("quantity", number), ("value_base", number),
            ("description", text), ("depends_on", names), ("tags", names), ("params", text),
        ]
    )  # fmt: skip
    plans = pa.schema(
        [
            ("id", text), ("index", pa.int64()), ("context_digest", text),
            ("config_digest", text), ("status", text), ("planner", text), ("plan_id", text),
            ("score", number), ("steps", pa.int64()), ("metrics", text), ("warnings", names),
            ("error_type", text), ("error_message", text), ("error_field", text),
        ]
    )  # fmt: skip
    return steps, plans


def write_parquet(lines: Path, steps_path: Path, plans_path: Path) -> None:
    """Write both tables from the JSON Lines file `lines` (in its order)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "Parquet output needs pyarrow: pip install 'planforge[batch]' (or write .jsonl)"
        ) from None
    steps_schema, plans_schema = _schemas()
    with (
        pq.ParquetWriter(steps_path, steps_schema) as steps_out,
        pq.ParquetWriter(plans_path, plans_schema) as plans_out,
    ):
        for records in _groups(lines):
            step_rows = [row for record in records for row in _step_rows(record)]
            steps_out.write_table(pa.Table.from_pylist(step_rows, schema=steps_schema))
            plan_rows = [_plan_row(record) for record in records]
            plans_out.write_table(pa.Table.from_pylist(plan_rows, schema=plans_schema))


def _groups(lines: Path) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    with lines.open("r", encoding="utf-8") as source:
        for line in source:
            group.append(json.loads(line))
            if len(group) >= _ROWS_PER_GROUP:
                yield group
                group = []
    if group:
        yield group


def _step_rows(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    plan = record.get("plan") or {}
    for step in plan.get("steps", ()):
        params = step.get("params") if isinstance(step.get("params"), dict) else {}
        yield {
            "id": record["id"],
            "index": record["index"],
            "plan_id": plan.get("plan_id"),
            "step": str(step.get("id")),
            "action": step.get("action"),
            "symbol": _text(params.get("symbol")),
            "quantity": _number(params.get("quantity")),
            "value_base": _number(params.get("value_base", params.get("value"))),
            "description": step.get("description"),
            "depends_on": [str(d) for d in step.get("depends_on", ())],
            "tags": [str(t) for t in step.get("tags", ())],
            "params": json.dumps(params, ensure_ascii=False, sort_keys=True),
        }


def _plan_row(record: dict[str, Any]) -> dict[str, Any]:
    plan, error = record.get("plan"), record.get("error") or {}
    return {
        "id": record["id"],
        "index": record["index"],
        "context_digest": record.get("context_digest"),
        "config_digest": record.get("config_digest"),
        "status": "planned" if plan is not None else "failed",
        "planner": record.get("planner"),
        "plan_id": plan.get("plan_id") if plan else None,
        "score": _number(plan.get("score")) if plan else None,
        "steps": len(plan.get("steps", ())) if plan else None,
        "metrics": json.dumps(plan.get("metrics", {}), sort_keys=True) if plan else None,
        "warnings": [str(w) for w in plan.get("warnings", ())] if plan else [],
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "error_field": error.get("field"),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
