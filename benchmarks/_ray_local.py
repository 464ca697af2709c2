"""A throwaway local Ray head on loopback, for the tests and benchmarks that need a cluster.

Ray 2.60 otherwise advertises a non-loopback address the driver cannot reach here, so the
head is started with `--node-ip-address=127.0.0.1`, on a free ephemeral port (outside Ray's
worker port range) and in a short temp dir of its own (Unix socket paths stay short). On the
way out every process `ray start` left in its session is killed and the dir removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["local_ray_cluster"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_ray_cluster(num_cpus: int = 2) -> Iterator[str]:
    """The address of a new Ray head with `num_cpus` CPUs; raises RuntimeError if it fails."""
    temp_dir = tempfile.mkdtemp(prefix="pfray", dir="/tmp")
    port = _free_port()
    command = [
        *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head"),
        *("--node-ip-address=127.0.0.1", f"--port={port}", f"--temp-dir={temp_dir}"),
        *(f"--num-cpus={num_cpus}", "--object-store-memory=100000000"),
        *("--include-dashboard=false", "--disable-usage-stats"),
    ]
    with open(Path(temp_dir) / "start.log", "wb") as log:
        starter = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        code = starter.wait(timeout=90)
        if code != 0:
            text = (Path(temp_dir) / "start.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ray start failed with exit code {code}:\n{text}")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(starter, temp_dir)


def _stop(starter: subprocess.Popen[bytes], temp_dir: str) -> None:
    if starter.poll() is None:
        starter.kill()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(starter.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(1.0)
    starter.wait(timeout=10)
    shutil.rmtree(temp_dir, ignore_errors=True)
