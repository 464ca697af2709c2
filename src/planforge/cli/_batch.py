"""`planforge batch`: plan every portfolio of a directory or JSON Lines file into one OUTPUT.

Exit codes: 0 every input planned, 1 some input failed (each failure is a line of OUTPUT
naming the input and the field), 2 nothing could run (no input, a bad --config, an OUTPUT
that exists without --resume, no executor), 130 interrupted (OUTPUT stays valid: run again
with --resume).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from planforge.cli._apps import app
from planforge.cli._common import emit_json, guarded, rich_console

if TYPE_CHECKING:
    from collections.abc import Iterator

    from planforge.batch import BatchInput

__all__ = ["batch"]

NOTHING_RAN = 2
INTERRUPTED = 130


def _stop(message: str, code: int = NOTHING_RAN) -> NoReturn:
    from planforge.cli._common import fail

    fail(message, code)


# Long only by its options: Typer reads each option from the signature.
@app.command("batch")
@guarded
def batch(
    source: Annotated[
        Path | None,
        typer.Argument(
            metavar="INPUT",
            help="A directory of context files (.json, .toml; ids are the file names) or a "
            'JSON Lines file of {"id": ..., "context": {...}} lines.',
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="JSON Lines file of results (with --generate: a directory)."
        ),
    ] = Path("plans.jsonl"),
    executor: Annotated[
        str, typer.Option("--executor", help="process (this machine) or ray (a cluster).")
    ] = "process",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (default: one per core)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="PLANFORGE_RAY_ADDRESS",
            help="The Ray head (host:port) for --executor ray.",
            show_envvar=True,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Configuration for inputs that name none: a preset, a TOML file, or a stored "
            "version (an id, NAME:VERSION or NAME).",
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="The objective of inputs that name none.")
    ] = "Rebalance my portfolio",
    planner: Annotated[
        str | None, typer.Option("--planner", help="Use this planner instead of selecting.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds each input may take.")
    ] = 60.0,
    chunk_size: Annotated[
        int,
        typer.Option(
            "--chunk-size", min=1, help="Inputs sent to a worker at once (one job, one task)."
        ),
    ] = 8,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish an interrupted batch: skip inputs whose plan (same context and "
            "configuration digests) is already in OUTPUT.",
        ),
    ] = False,
    record_runs: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Also write each run to the runs table of the configuration store "
            "(PLANFORGE_DATABASE_URL), as user --user.",
        ),
    ] = False,
    user: Annotated[str, typer.Option("--user", help="The user of recorded runs.")] = "batch",
    buckets: Annotated[
        str | None,
        typer.Option(
            "--buckets",
            help="Plan buckets instead of INPUT: all, or names separated by commas; each with "
            "its stored context and the configuration it runs now.",
        ),
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate",
            min=0,
            help="Write N synthetic portfolios as context files into the OUTPUT directory "
            "(seeded) instead of planning.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --generate.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Plan many portfolios at once on worker processes or a Ray cluster.

    Results are written as they finish (a killed batch loses no finished plan), then put in
    input order; one bad portfolio never stops the others.
    """
    if generate is not None:
        _generate(generate, seed, output)
        return
    from planforge.batch import EXECUTOR_NAMES, JsonlOutput, OutputExists

    if executor not in EXECUTOR_NAMES:
        _stop(f"unknown executor {executor!r}: choose process or ray")
    chosen = _config_text(config) if config is not None else None
    inputs, total = _inputs(source, buckets)
    record, tables = _record_path(output, resume)
    try:
        sink = JsonlOutput(record, resume=resume)
    except OutputExists as exc:
        _stop(str(exc))
    options = dict(
        executor=executor, workers=workers, address=address, config=chosen,
        objective=objective, planner=planner, timeout_s=timeout, chunk_size=chunk_size,
    )  # fmt: skip
    recorder = _recorder(objective, user) if record_runs else None
    summary = _run(inputs, sink, total, options, quiet=as_json, recorder=recorder)
    if tables is not None:
        from planforge.batch import write_parquet

        write_parquet(record, *tables)
    _report(summary, output, as_json=as_json)


def _recorder(objective: str, user: str) -> Any:
    from planforge.batch import RunRecorder
    from planforge.cli._store import open_store
    from planforge.ids import id_problem

    problem = id_problem(user)
    if problem is not None:
        _stop(f"--user {problem}")
    return RunRecorder(open_store(), objective, user)


def _record_path(output: Path, resume: bool) -> tuple[Path, tuple[Path, Path] | None]:
    """The JSON Lines file the batch writes, and for a .parquet OUTPUT its two tables."""
    if output.suffix.lower() != ".parquet":
        return output, None
    from importlib.util import find_spec

    from planforge.batch import parquet_paths

    if find_spec("pyarrow") is None:
        _stop("Parquet output needs pyarrow: pip install 'planforge[batch]', or write .jsonl")
    record, steps, plans = parquet_paths(output)
    if steps.exists() and not resume:
        _stop(f"{steps} exists; give --resume to finish that batch, or another OUTPUT")
    return record, (steps, plans)


def _inputs(source: Path | None, buckets: str | None) -> tuple[Iterator[BatchInput], int]:
    """The batch's inputs, streamed, and how many there are."""
    from planforge.batch import read_inputs

    if buckets is not None:
        if source is not None:
            _stop("give either INPUT or --buckets, not both")
        return _bucket_inputs(buckets)
    if source is None:
        _stop("give INPUT (a directory of context files or a .jsonl), --buckets or --generate N")
    if not source.exists():
        _stop(f"batch input {source} not found; give a directory of context files or a .jsonl")
    total = _count(source)
    if total == 0:
        _stop(f"batch input {source} holds no inputs (no .json or .toml file, no line)")
    return read_inputs(source), total


def _bucket_inputs(buckets: str) -> tuple[Iterator[BatchInput], int]:
    from planforge.batch import bucket_inputs
    from planforge.cli._store import open_store

    asked = [name.strip() for name in buckets.split(",") if name.strip()]
    store = open_store()
    names = store.list_buckets() if asked == ["all"] else asked
    if not names:
        store.close()
        _stop("no buckets to plan: assign a configuration to one first (planforge bucket assign)")

    def streamed() -> Iterator[BatchInput]:
        try:
            yield from bucket_inputs(store, names)
        finally:
            store.close()

    return streamed(), len(names)


def _generate(count: int, seed: int, folder: Path) -> None:
    """Write `count` generated portfolios as `<id>.json` files into `folder`."""
    import json

    from planforge.portfolio.synthetic import generate_portfolios

    if folder.exists() and not folder.is_dir():
        _stop(f"{folder} is a file; --generate writes context files into a directory")
    folder.mkdir(parents=True, exist_ok=True)
    for ident, context in generate_portfolios(count, seed):
        (folder / f"{ident}.json").write_text(json.dumps(context, indent=1), encoding="utf-8")
    typer.echo(f"wrote {count:,} portfolios (seed {seed}) to {folder}")


def _config_text(reference: str) -> str:
    """The batch's configuration as a preset name or TOML text, validated before anything
    runs: workers on other machines get the text, never a path."""
    from planforge.batch import as_toml_text
    from planforge.configstore import parse_validated
    from planforge.errors import PlannerError
    from planforge.portfolio.planner import PRESETS

    if reference in PRESETS:
        return reference
    path = Path(reference)
    try:
        if path.is_file():
            text, source = path.read_text(encoding="utf-8"), str(path)
        else:
            text, source = _stored(reference)
        parse_validated(text, source=source)
        text = as_toml_text(text)
    except PlannerError as exc:
        _stop(exc.message)
    except (OSError, UnicodeDecodeError) as exc:
        _stop(f"configuration {reference} cannot be read: {exc}")
    return text


def _stored(reference: str) -> tuple[str, str]:
    from planforge.cli._store import open_store, resolve_version
    from planforge.configstore import config_label
    from planforge.errors import PlannerError
    from planforge.portfolio.planner import PRESETS

    try:
        with open_store() as store:
            version = resolve_version(store, reference)
    except PlannerError:
        _stop(
            f"configuration {reference!r} is neither a preset ({', '.join(PRESETS)}), a file "
            "nor a stored version (an id, NAME:VERSION or NAME)"
        )
    return version.toml, config_label(version)


def _count(source: Path) -> int:
    """How many inputs, for the progress bar (a quick pass)."""
    from planforge.batch import CONTEXT_SUFFIXES

    if source.is_dir():
        return sum(1 for p in source.iterdir() if p.suffix.lower() in CONTEXT_SUFFIXES)
    count = 0
    with source.open("rb") as data:
        for line in data:
            count += bool(line.strip())
    return count


def _run(
    inputs: Iterator[BatchInput],
    sink: Any,
    total: int | None,
    options: dict[str, Any],
    *,
    quiet: bool,
    recorder: Any = None,
) -> dict[str, Any]:
    """Plan, writing each result as it finishes; the summary's figures."""
    from planforge.batch import plan_many
    from planforge.errors import PlannerError

    failed: Counter[str] = Counter()
    planned = 0
    started = time.perf_counter()
    progress = _progress(total, quiet)
    try:
        for result in plan_many(inputs, skip=sink.skip, **options):
            sink.write(result)
            if recorder is not None:
                recorder.add(result)
            if result.ok:
                planned += 1
            else:
                failed[result.reason or "error"] += 1
            if progress is not None:
                done = planned + failed.total() + sink.resumed
                rate = f"{planned / (time.perf_counter() - started):,.0f} plans/s"
                progress.update(progress.task_ids[0], completed=done, rate=rate)
    except KeyboardInterrupt:
        sink.close()
        _stop_progress(progress)
        _stop("interrupted: OUTPUT holds every finished plan; run again with --resume", INTERRUPTED)
    except PlannerError as exc:  # the executor could not start: nothing ran
        sink.abandon()
        _stop_progress(progress)
        _stop(exc.message)
    _stop_progress(progress)
    sink.finish()
    elapsed = time.perf_counter() - started
    recorded = _recorded(recorder)
    return {
        **recorded,
        "planned": planned,
        "failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items())),
        "resumed": sink.resumed,
        "seconds": round(elapsed, 3),
        "plans_per_second": round(planned / elapsed, 1) if elapsed > 0 else None,
        "executor": options["executor"],
    }


def _recorded(recorder: Any) -> dict[str, Any]:
    if recorder is None:
        return {}
    recorder.flush()
    recorder.store.close()
    figures: dict[str, Any] = {"recorded": recorder.recorded}
    if recorder.problem is not None:
        figures["record_problem"] = recorder.problem
    return figures


def _progress(total: int | None, quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("planning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.add_task("planning", total=total, rate="")
    progress.start()
    return progress


def _stop_progress(progress: Any) -> None:
    if progress is not None:
        progress.stop()


def _report(summary: dict[str, Any], output: Path, *, as_json: bool) -> None:
    if as_json:
        emit_json({**summary, "output": str(output)})
    else:
        console = rich_console()
        rate = summary["plans_per_second"]
        line = (
            f"planned {summary['planned']:,}, failed {summary['failed']:,}"
            f"{_resumed_text(summary)} in {summary['seconds']:.1f} s"
            f"{f' ({rate:,.1f} plans/s)' if rate else ''} -> {output}"
        )
        console.print(line, highlight=False, markup=False)
        for reason, count in summary["failed_by_reason"].items():
            console.print(f"  {reason}: {count:,}", highlight=False, markup=False)
        if "recorded" in summary:
            console.print(f"recorded {summary['recorded']:,} runs", highlight=False)
        if "record_problem" in summary:
            console.print(f"runs not recorded: {summary['record_problem']}", markup=False)
    if summary["failed"]:
        raise typer.Exit(1)


def _resumed_text(summary: dict[str, Any]) -> str:
    return f", {summary['resumed']:,} already done" if summary["resumed"] else ""
