"""The "why this plan" section the CLI prints after a plan (`plan --explain`) or a dry run
(`config dry-run --explain --context ...`).

It reads the explanation as JSON data (`Plan.explanation`, the shape of
`planforge.holistic.Explanation.to_dict()`), never the engine's objects, so it prints the
same thing for a plan made here, read back from the runs table, or planned in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planforge.cli._common import number_text, quantity_text, rich_console

__all__ = ["print_explanation", "print_limits"]

#: The engine's `[planner]` settings that bound what each stage keeps, in pipeline order.
LIMIT_KEYS: tuple[tuple[str, str], ...] = (
    ("max_opportunities_per_category", "candidates kept per calculator"),
    ("max_candidates", "candidates handed to sequence generators"),
    ("candidate_variants", "sizes kept per trade"),
    ("max_patterns_per_generator", "sequences taken per pattern generator"),
    ("max_sequences", "sequences in all"),
    ("max_depth", "most steps in a sequence"),
    ("priority_threshold", "lowest mean priority of a sequence"),
)


def _score(value: Any) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def _why(*parts: tuple[int, str]) -> str:
    """The non-zero reasons, as "3 too deep, 1 with a symbol twice"."""
    return ", ".join(f"{count:,} {text}" for count, text in parts if count)


def _calculators_table(calculators: list[Mapping[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Candidates each opportunity calculator proposed")
    for name in ("calculator", "side", "symbol"):
        table.add_column(name, no_wrap=True)
    for name in ("quantity", "value", "priority"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("reason")
    for report in calculators:
        module = str(report["module"]).split(".", 1)[-1]
        candidates = report.get("candidates") or []
        label = module + (" (failed)" if report.get("failed") else "")
        returned = report.get("returned")
        if returned is not None and returned > len(candidates):
            label += f" ({len(candidates)} of {returned})"
        if not candidates:
            table.add_row(label, "", "", "", "", "", "proposed nothing")
        for number, action in enumerate(candidates):
            table.add_row(
                label if number == 0 else "",
                str(action["side"]),
                str(action["symbol"]),
                quantity_text(action.get("quantity")),
                number_text(action.get("value")),
                f"{action.get('priority') or 0.0:.2f}",
                str(action.get("reason") or ""),
            )
    return table


def _stage_rows(data: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """(stage, module, in, out, dropped, why) for every stage, in pipeline order."""
    rows: list[tuple[str, ...]] = []
    for report in data.get("generators") or []:
        kind, _, module = str(report["module"]).partition(".")
        dropped = report["repeated"] + report["cut"]
        why = _why((report["repeated"], "already made or empty"), (report["cut"], "past the cap"))
        stage = "pattern" if kind == "pattern_generators" else "sequence generator"
        rows.append(
            (stage, module, f"{report['produced']:,}", f"{report['new']:,}", f"{dropped:,}", why)
        )
    for report in data.get("filters") or []:
        module = str(report["module"]).split(".", 1)[-1]
        counts = (f"{report['received']:,}", f"{report['kept']:,}", f"{report['dropped']:,}")
        rows.append(("filter", module, *counts, "its rule" if report["dropped"] else ""))
    shape = data["feasibility"]
    dropped = shape["dropped_depth"] + shape["dropped_repeated_symbol"] + shape["dropped_priority"]
    why = _why(
        (shape["dropped_depth"], f"over {shape['max_depth']} steps"),
        (shape["dropped_repeated_symbol"], "with a symbol twice"),
        (shape["dropped_priority"], f"mean priority below {shape['priority_threshold']:g}"),
    )
    counts = (f"{shape['received']:,}", f"{shape['kept']:,}", f"{dropped:,}")
    rows.append(("feasibility", "", *counts, why))
    evaluation = data["evaluation"]
    counts = (
        f"{evaluation['evaluated']:,}",
        f"{evaluation['feasible']:,}",
        f"{evaluation['infeasible']:,}",
    )
    why = "cannot execute (cash, holdings or a trading rule)" if evaluation["infeasible"] else ""
    rows.append(("evaluation", "", *counts, why))
    return rows


def _stages_table(data: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Sequences at each stage")
    table.add_column("stage", no_wrap=True)
    table.add_column("module", no_wrap=True)
    for name in ("in", "kept", "dropped"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("why dropped")
    for row in _stage_rows(data):
        table.add_row(*row)
    return table


def _blocked_table(blocked: Mapping[str, Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("side", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    table.add_column("quantity", justify="right", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("priority", justify="right", no_wrap=True)
    for number, step in enumerate(blocked["steps"], start=1):
        table.add_row(
            str(number),
            str(step["side"]),
            str(step["symbol"]),
            quantity_text(step.get("quantity")),
            number_text(step.get("value")),
            f"{step.get('priority') or 0.0:.2f}",
        )
    return table


def _print_blocked(console: Any, data: Mapping[str, Any]) -> None:
    """For an empty plan: the closest plans a rule stopped, and which rule."""
    blocked = data.get("blocked") or []
    evaluation = data["evaluation"]
    if not blocked:
        if evaluation["evaluated"] == 0:
            console.print("no sequence reached the evaluation: see the stages above")
        elif evaluation["infeasible"] == 0:
            console.print("every evaluated sequence could execute; none improved the score")
        return
    current = data.get("current_score")
    for number, plan in enumerate(blocked):
        title = "Closest blocked plan" if number == 0 else f"Next blocked plan ({number + 1})"
        console.print(_blocked_table(plan, title))
        console.print(
            f"stopped by: {plan['reason']}\n"
            f"score if allowed {_score(plan.get('score_if_allowed'))} "
            f"(the portfolio as it is scores {_score(current)})",
            markup=False,
            highlight=False,
        )
    scored = data.get("blocked_scored", 0)
    if scored:
        console.print(
            f"closest: the highest score if allowed among {scored:,} refused sequences",
            highlight=False,
        )
    else:
        console.print("closest: the highest mean priority (the domain cannot score them)")


def print_explanation(data: Mapping[str, Any] | None, *, planner: str = "the planner") -> None:
    """The explanation as a person reads it: candidates, stages, and for an empty plan the
    closest blocked plan."""
    console = rich_console()
    if not data:
        console.print(f"no explanation: {planner} does not explain its plans", markup=False)
        return
    console.print(_calculators_table(data.get("calculators") or []))
    offered = data.get("candidates") or {}
    console.print(
        f"candidates for sequence generators: {offered.get('kept', 0):,} of "
        f"{offered.get('offered', 0):,} distinct trades and sizes",
        highlight=False,
    )
    console.print(_stages_table(data))
    evaluation = data["evaluation"]
    console.print(
        f"best feasible score {_score(evaluation.get('best_score'))}, "
        f"the portfolio as it is {_score(data.get('current_score'))}",
        highlight=False,
    )
    if not data.get("plan_steps"):
        _print_blocked(console, data)


def print_limits(planner_settings: Mapping[str, Any]) -> None:
    """What bounds each stage, for a dry run without a context to plan."""
    console = rich_console()
    console.print("stage limits (give --context to see what each stage proposed and dropped):")
    for key, label in LIMIT_KEYS:
        if key in planner_settings:
            console.print(f"  {key} = {planner_settings[key]}  ({label})", highlight=False)
