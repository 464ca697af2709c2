"""Batch planning on a real local Ray cluster (`ray start --head` on loopback, stopped at the
end): the same OUTPUT as the process executor, byte for byte, and a worker killed by one
input fails only that input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks._ray_local import local_ray_cluster

from planforge.batch import generated_inputs, plan_many
from tests.batch._plugins import hostile_factory

pytest.importorskip("ray", reason="the ray extra is not installed: pip install '.[ray]'")


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with local_ray_cluster(num_cpus=2) as head:
        yield head


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "planforge.cli", "batch", *args]
    env = {**os.environ, "PLANFORGE_HOME": str(root)}
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env, timeout=600)


def test_ray_and_process_write_byte_identical_output(address: str, tmp_path: Path) -> None:
    made = _batch(tmp_path, "--generate", "200", "--seed", "11", "-o", "contexts")
    assert made.returncode == 0, made.stderr
    process = _batch(tmp_path, "contexts", "-o", "process.jsonl", "--workers", "2")
    assert process.returncode == 0, process.stderr
    ray = _batch(tmp_path, "contexts", "-o", "ray.jsonl", "--executor", "ray", "--address", address)
    assert ray.returncode == 0, ray.stderr
    assert "planned 200, failed 0" in ray.stdout
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "process.jsonl").read_bytes()


def test_a_ray_worker_killed_by_one_input_fails_only_that_input(
    address: str, tmp_path: Path
) -> None:
    factory = hostile_factory(tmp_path)
    inputs = list(generated_inputs(8))
    inputs[5] = inputs[5]._replace(planner="crash")
    try:
        results = list(
            plan_many(inputs, executor="ray", address=address, chunk_size=4, factory=factory)
        )
    finally:
        factory.close()
    failed = [(r.id, r.reason) for r in results if not r.ok]
    assert failed == [("p000006", "WorkerLost")]
    assert len(results) == 8
