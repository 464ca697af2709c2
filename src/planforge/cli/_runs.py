"""`planforge runs ...`: the plan runs the service recorded in the configuration store.

The command line has the database, so it acts as an admin: it sees every user's runs and may
cancel any of them (`--as-user` cancels as that user, with that user's rights instead).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from planforge.cli._apps import runs_app
from planforge.cli._common import JsonOption, emit_json, fail, guarded, rich_console
from planforge.cli._store import actor_name, open_store, short_when, when_text

if TYPE_CHECKING:
    from planforge.configstore import ConfigStore, StoredRun

__all__ = ["parse_since", "runs_cancel", "runs_list", "runs_prune", "runs_show"]

#: A plan's steps shown by `runs show` (`--json` has them all).
STEPS_SHOWN: Final = 20
_AGE = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

RunIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The run's id.")]


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise), or an age such as 12h or 7d."""
    value = text.strip()
    match = _AGE.match(value)
    if match:
        seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"]]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"--since {text!r} is not a date: give an ISO 8601 date or time (2026-12-01, "
            "2026-12-01T09:30, 2026-12-01T09:30+02:00) or an age such as 30m, 12h or 7d"
        )
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _check_status(status: str | None) -> None:
    from planforge.configstore import RUN_STATUSES

    if status is not None and status not in RUN_STATUSES:
        fail(f"--status {status!r} is not a run status; give one of {', '.join(RUN_STATUSES)}")


def _seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02}m" if hours else f"{minutes}m {rest:02}s"


def _duration(run: StoredRun) -> str:
    if run.finished:
        return _seconds_text(run.duration_s)
    if run.started_at is not None:
        elapsed = (datetime.now(UTC) - run.started_at).total_seconds()
        return f"{_seconds_text(max(elapsed, 0.0))} so far"
    return ""


def _planner_text(run: StoredRun) -> str:
    if run.planner is None:
        return ""
    return f"{run.planner} {run.planner_version}" if run.planner_version else run.planner


def _bucket_text(run: StoredRun) -> str:
    config = f"#{run.config_id} v{run.config_version}" if run.config_id is not None else ""
    if run.bucket and config:
        return f"{run.bucket} ({config})"
    return run.bucket or config


@runs_app.command("list")
@guarded
def runs_list(
    bucket: Annotated[str | None, typer.Option("--bucket", help="Only this bucket's.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Created since: an ISO 8601 date or time, or 12h, 7d."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="queued, running, completed, failed, cancelled or interrupted.",
        ),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recorded runs, newest first."""
    _check_status(status)
    after = parse_since(since) if since is not None else None
    with open_store() as store:
        runs = store.runs.list(user=user, bucket=bucket, status=status, since=after, limit=limit)
    if as_json:
        emit_json([run.to_dict(with_plan=False) for run in runs])
        return
    from rich.table import Table

    table = Table(title=f"{len(runs)} run(s), newest first")
    for column in ("run id", "user", "status", "planner", "bucket (config)"):
        table.add_column(column, no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("duration", no_wrap=True, justify="right")
    for run in runs:
        table.add_row(
            run.run_id,
            run.user,
            run.status + (" (cancel asked)" if run.cancel_requested and not run.finished else ""),
            _planner_text(run),
            _bucket_text(run),
            short_when(run.created_at),
            _duration(run),
        )
    rich_console().print(table)


def _config_used(store: ConfigStore, run: StoredRun) -> dict[str, Any] | None:
    """The stored configuration version the run used, and whether its content still matches."""
    if run.config_id is None:
        return None
    from planforge.configstore import ConfigNotFound

    try:
        config = store.get_config_by_id(run.config_id)
    except ConfigNotFound:
        return {"id": run.config_id, "version": run.config_version, "found": False}
    return {
        "id": config.id,
        "name": config.name,
        "version": config.version,
        "digest": config.digest,
        "found": True,
        "digest_matches": run.config_digest in (None, config.digest),
    }


def _print_run(run: StoredRun, config: dict[str, Any] | None) -> None:
    from rich.table import Table

    table = Table(title=f"run {run.run_id}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    used = ""
    if config is not None:
        named = f"{config['name']} " if config.get("name") else ""
        used = f"{named}v{config['version']} (id {config['id']})"
        if not config["found"]:
            used += ", no longer in the store"
        elif not config["digest_matches"]:
            used += ", content differs from the run's digest"
    rows = [
        ("user", run.user),
        ("status", run.status + (", cancel asked" if run.cancel_requested else "")),
        ("objective", run.objective),
        ("planner", _planner_text(run)),
        ("bucket", run.bucket or ""),
        ("configuration", used),
        ("context", f"{run.context_kind or 'any kind'}, {run.context_bytes} bytes compressed"),
        ("created", when_text(run.created_at)),
        ("started", when_text(run.started_at)),
        ("finished", when_text(run.finished_at)),
        ("duration", _duration(run)),
        ("attempts", str(run.attempts)),
        ("replica", run.lease_owner or ""),
        ("worker", run.worker or ""),
        ("request id", run.request_id or ""),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console = rich_console()
    console.print(table)
    if run.error is not None:
        typer.echo(f"error: {run.error.get('error')}: {run.error.get('message')}")
    if run.plan is not None:
        console.print(_steps_table(run.plan))


def _steps_table(plan: dict[str, Any]) -> Any:
    from rich.table import Table

    steps = [step for step in plan.get("steps") or [] if isinstance(step, dict)]
    score = plan.get("score")
    shown = f", score {score}" if score is not None else ""
    more = f", the first {STEPS_SHOWN} shown" if len(steps) > STEPS_SHOWN else ""
    table = Table(title=f"plan {plan.get('plan_id', '')}: {len(steps)} step(s){shown}{more}")
    for column in ("step", "action", "description"):
        table.add_column(column)
    for step in steps[:STEPS_SHOWN]:
        cells = (step.get("id"), step.get("action"), step.get("description"))
        table.add_row(*("" if cell is None else str(cell) for cell in cells))
    return table


@runs_app.command("show")
@guarded
def runs_show(
    run_id: RunIdArgument,
    context: Annotated[bool, typer.Option("--context", help="Also print its context.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Also print why this plan: the explanation recorded with it (a run started "
            'with explain, e.g. POST /plans with "explain": true).',
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """One run: its status, plan steps or error, and the configuration version it used."""
    from planforge.configstore import RunNotFound

    with open_store() as store:
        run = store.runs.get(run_id, with_context=context)
        if run is None:
            raise RunNotFound(run_id)
        config = _config_used(store, run)
    if as_json:
        emit_json({"run": run.to_dict(with_context=context), "config": config})
        return
    _print_run(run, config)
    if explain:
        from planforge.cli._explain import print_explanation

        if run.plan is None:
            typer.echo("no explanation: the run has no plan")
        else:
            print_explanation(run.plan.get("explanation"), planner=run.planner or "the planner")
    if context:
        emit_json(run.context)


@runs_app.command("cancel")
@guarded
def runs_cancel(
    run_id: RunIdArgument,
    as_user: Annotated[
        str | None,
        typer.Option("--as-user", help="Cancel as this user (only its own runs), not as admin."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a run: a queued one at once, a running one when its runner next checks."""
    with open_store() as store:
        if as_user is not None:
            run = store.runs.request_cancel(run_id, user=as_user)
        else:
            run = store.runs.request_cancel(run_id, user=actor_name(None), admin=True)
    if as_json:
        emit_json(run.to_dict(with_plan=False))
    elif run.finished:
        typer.echo(f"run {run.run_id} cancelled; it had not started")
    else:
        typer.echo(f"run {run.run_id}: cancellation requested; its runner stops it shortly")


@runs_app.command("prune")
@guarded
def runs_prune() -> None:
    """Delete old finished runs now, within PLANFORGE_RUNS_* bounds (queued and running stay)."""
    with open_store() as store:
        deleted = store.runs.prune()
    typer.echo(f"pruned {deleted} finished run(s)")
