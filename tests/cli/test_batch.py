"""`planforge batch` as a user runs it: a real CLI process, real worker processes, a real
SIGKILL in the middle of a batch and a resume that plans nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ENV = {**os.environ, "COLUMNS": "200"}
for _variable in ("PLANFORGE_RAY_ADDRESS", "PLANFORGE_DATABASE_URL"):
    ENV.pop(_variable, None)


def _home(folder: Path) -> dict[str, str]:
    """The environment with a planforge home (store, cache) of the test's own."""
    return {**ENV, "PLANFORGE_HOME": str(folder / "home")}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "planforge.cli", *args]
    env = _home(cwd)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def portfolios(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch-cli")
    done = _cli("batch", "--generate", "40", "--seed", "5", "-o", "contexts", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "wrote 40 portfolios (seed 5)" in done.stdout
    return root / "contexts"


def test_a_directory_is_planned_into_input_order_with_a_summary(
    portfolios: Path, tmp_path: Path
) -> None:
    args = ("batch", str(portfolios), "-o", "out.jsonl", "--workers", "2", "--json")
    done = _cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["planned"], summary["failed"], summary["executor"]) == (40, 0, "process")
    assert summary["plans_per_second"] > 0
    records = _records(tmp_path / "out.jsonl")
    assert [r["index"] for r in records] == list(range(40))
    assert [r["id"] for r in records[:2]] == ["p000001", "p000002"]


def test_failed_inputs_name_themselves_and_exit_1(tmp_path: Path, portfolios: Path) -> None:
    contexts = tmp_path / "contexts"
    contexts.mkdir()
    for name in ("p000001.json", "p000002.json"):
        (contexts / name).write_text((portfolios / name).read_text())
    broken = json.loads((portfolios / "p000003.json").read_text())
    broken["positions"][0]["currency"] = "EURO"
    (contexts / "p000003.json").write_text(json.dumps(broken))
    (contexts / "p000004.json").write_text("{")
    done = _cli("batch", str(contexts), "-o", "out.jsonl", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "planned 2, failed 2" in done.stdout
    errors = {r["id"]: r["error"] for r in _records(tmp_path / "out.jsonl") if "error" in r}
    assert errors["p000003"]["field"] == "positions[0].currency"
    assert errors["p000004"]["type"] == "InvalidInput"
    assert "p000004.json: not valid JSON" in errors["p000004"]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nowhere",), "batch input nowhere not found"),
        ((), "give INPUT"),
        (("CONTEXTS", "--config", "fast"), "neither a preset"),
        (("CONTEXTS", "--executor", "cluster"), "unknown executor 'cluster'"),
        (("CONTEXTS", "-o", "taken.jsonl"), "taken.jsonl exists; give --resume"),
        (("CONTEXTS", "--executor", "ray"), "needs PLANFORGE_RAY_ADDRESS"),
        (("--buckets", "all"), "no buckets to plan"),
        (("CONTEXTS", "--buckets", "all"), "give either INPUT or --buckets"),
    ],
)
def test_nothing_can_run_exits_2_saying_why(
    args: tuple[str, ...], message: str, portfolios: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken.jsonl").write_text("{}\n")
    real = [str(portfolios) if arg == "CONTEXTS" else arg for arg in args]
    done = _cli("batch", *real, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert (tmp_path / "taken.jsonl").read_text() == "{}\n"
    assert not (tmp_path / "plans.jsonl").exists()  # nothing ran: no OUTPUT left behind


def test_resume_after_sigkill_finishes_the_rest_and_plans_nothing_twice(tmp_path: Path) -> None:
    made = _cli("batch", "--generate", "400", "-o", "contexts", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "planforge.cli", "batch", "contexts", "-o", "out.jsonl"]
    batch = subprocess.Popen(
        [*command, "--workers", "2"], cwd=tmp_path, env=_home(tmp_path),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not output.exists() or output.stat().st_size < 50_000):
        time.sleep(0.05)
    os.killpg(batch.pid, signal.SIGKILL)  # the batch and its workers, mid-write or not
    batch.wait(timeout=30)
    before = [line for line in output.read_text().split("\n")[:-1]]  # complete lines only
    assert 0 < len(before) < 400
    resumed = _cli("batch", "contexts", "-o", "out.jsonl", "--resume", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed"] == len(before)
    assert summary["planned"] == 400 - len(before)
    records = _records(output)
    assert [r["index"] for r in records] == list(range(400))
    assert all("plan" in r for r in records)


def test_ctrl_c_ends_with_130_and_a_valid_output(tmp_path: Path, portfolios: Path) -> None:
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "planforge.cli", "batch", str(portfolios), "-o", "out.jsonl"]
    batch = subprocess.Popen(
        [*command, "--workers", "1", "--chunk-size", "1"], cwd=tmp_path, env=_home(tmp_path),
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not output.exists() or output.stat().st_size == 0):
        time.sleep(0.02)
    os.killpg(batch.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    _, err = batch.communicate(timeout=60)
    assert batch.returncode == 130, err
    assert "interrupted: OUTPUT holds every finished plan; run again with --resume" in err
    lines = output.read_text().splitlines()
    assert 0 < len(lines) < 40
    assert all("plan" in json.loads(line) for line in lines)


def test_parquet_output_has_a_row_per_step_and_a_plans_table(
    tmp_path: Path, portfolios: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the batch extra is not installed")
    contexts = tmp_path / "contexts"
    contexts.mkdir()
    for name in ("p000001.json", "p000002.json", "p000003.json"):
        (contexts / name).write_text((portfolios / name).read_text())
    (contexts / "p000004.json").write_text("{")
    done = _cli("batch", str(contexts), "-o", "out.parquet", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    record = _records(tmp_path / "out.jsonl")  # the resumable record beside the tables
    plans = pq.read_table(tmp_path / "out.plans.parquet").to_pylist()
    steps = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [(p["id"], p["status"]) for p in plans] == [
        ("p000001", "planned"),
        ("p000002", "planned"),
        ("p000003", "planned"),
        ("p000004", "failed"),
    ]
    assert plans[3]["error_type"] == "InvalidInput"
    assert len(steps) == sum(len(r["plan"]["steps"]) for r in record if "plan" in r) > 0
    first = record[0]["plan"]["steps"][0]
    assert (steps[0]["id"], steps[0]["action"]) == ("p000001", first["action"])
    assert steps[0]["symbol"] == first["params"]["symbol"]
    assert json.loads(steps[0]["params"]) == first["params"]


def test_record_writes_each_run_to_the_runs_table(tmp_path: Path, portfolios: Path) -> None:
    from planforge.configstore import COMPLETED, FAILED, ConfigStore

    contexts = tmp_path / "contexts"
    contexts.mkdir()
    for name in ("p000001.json", "p000002.json"):
        (contexts / name).write_text((portfolios / name).read_text())
    (contexts / "p000003.json").write_text('{"cash": -1}')
    database = f"sqlite:///{tmp_path / 'runs.db'}"
    command = [sys.executable, "-m", "planforge.cli", "batch", "contexts", "-o", "out.jsonl"]
    done = subprocess.run(
        [*command, "--record", "--user", "nightly", "--workers", "1", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**ENV, "PLANFORGE_DATABASE_URL": database},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["recorded"] == 3
    with ConfigStore(database) as store:
        runs = sorted(store.runs.list(user="nightly"), key=lambda run: run.run_id)
        statuses = sorted(run.status for run in runs)
        first = store.runs.get(runs[0].run_id, with_context=True)
    assert statuses == [COMPLETED, COMPLETED, FAILED]
    assert first is not None
    assert first.objective == "Rebalance my portfolio"
    lines = {r["context_digest"]: r for r in _records(tmp_path / "out.jsonl")}
    assert first.context_digest in lines


def test_buckets_are_planned_with_their_context_and_configuration(
    tmp_path: Path, portfolios: Path
) -> None:
    from planforge.batch import config_digest
    from planforge.configstore import ConfigStore
    from planforge.portfolio.planner import preset_text

    database = f"sqlite:///{tmp_path / 'store.db'}"
    toml = preset_text("conservative")
    with ConfigStore(database) as store:
        version = store.create_new_version("careful", "careful", toml).config
        for bucket in ("core", "satellite"):
            store.assign_config_to_bucket(bucket, version.id)
    env = {**ENV, "PLANFORGE_DATABASE_URL": database}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "planforge.cli", *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env)

    stored = cli("bucket", "context", "core", "--set", str(portfolios / "p000001.json"))
    assert stored.returncode == 0, stored.stderr
    assert "bucket core context set from" in stored.stdout
    shown = cli("bucket", "context", "core")
    assert json.loads(shown.stdout) == json.loads((portfolios / "p000001.json").read_text())
    missing = cli("bucket", "context", "satellite")
    assert missing.returncode == 1
    assert "satellite has no stored context" in missing.stderr
    done = cli("batch", "--buckets", "all", "-o", "out.jsonl", "--workers", "1")
    assert done.returncode == 1, done.stderr
    core, satellite = _records(tmp_path / "out.jsonl")
    assert (core["id"], core["config_digest"]) == ("core", config_digest(toml))
    assert "plan" in core
    assert "planforge bucket context satellite --set FILE" in satellite["error"]["message"]
    both = cli("batch", "--buckets", "core,nowhere", "-o", "two.jsonl", "--workers", "1")
    nowhere = _records(tmp_path / "two.jsonl")[1]
    assert both.returncode == 1
    assert nowhere["id"] == "nowhere"
    assert "nowhere" in nowhere["error"]["message"]
