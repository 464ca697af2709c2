"""A real `planforge serve` process on a free loopback port, for the tests that need one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until_live(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    """Poll /livez (bounded); fail with the server's log when it exits or never answers."""
    deadline = time.monotonic() + 30.0
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {log_path.read_text()}")
        try:
            if http("GET", f"{base}/livez")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server never answered: {log_path.read_text()}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> int:
    """Terminate, then kill if it does not stop; the exit code of a clean stop."""
    process.terminate()
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@contextmanager
def serving(env: Mapping[str, str], log_path: Path, *arguments: str) -> Iterator[str]:
    """Run `planforge serve` until the block ends; yields its base URL once it is live."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "planforge.cli", "serve", "--port", str(port), *arguments],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_live(process, base, log_path)
            yield base
        finally:
            with suppress(subprocess.TimeoutExpired):
                stop(process)
