"""A real `planforge serve` process on a free loopback port, for the tests that need one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from planforge.configstore import ConfigStore


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
def serving(
    env: Mapping[str, str],
    log_path: Path,
    *arguments: str,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """Run `planforge serve` until the block ends; yields its base URL once it is live (and
    appends its process to `started`, for a test that needs its pid)."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "planforge.cli", "serve", "--port", str(port), *arguments],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if started is not None:
            started.append(process)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_live(process, base, log_path)
            yield base
        finally:
            with suppress(subprocess.TimeoutExpired):
                stop(process)


@dataclass(frozen=True)
class Served:
    """A running `planforge serve`: where it answers, its users' tokens, its log and state."""

    base: str
    tokens: dict[str, str]
    log_path: Path
    database: str
    tmp_path: Path
    pid: int = 0

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://")


@contextmanager
def served_planforge(
    tmp_path: Path,
    *,
    users: Mapping[str, str],
    plugins: Mapping[str, str] | None = None,
    database: str | None = None,
    env: Mapping[str, str] | None = None,
    arguments: tuple[str, ...] = (),
) -> Iterator[Served]:
    """A real server on its own store (a SQLite file unless `database` is given), with the
    `users` (name -> role) created first and the `plugins` (module -> source) in its plugin
    directory; Redis and ambient plugin settings are left out unless `env` sets them."""
    url = database or f"sqlite:///{tmp_path / 'store.db'}"
    with ConfigStore(url) as store:
        tokens = {name: store.create_user(name, role)[1] for name, role in users.items()}
    environment = {**os.environ}
    for variable in ("PLANFORGE_REDIS_URL", "FACTORY_PLUGIN_DIRS", "ALLOWED_PLANNERS"):
        environment.pop(variable, None)
    environment.update(
        PLANFORGE_DATABASE_URL=url,
        FACTORY_CACHE_DIR=str(tmp_path / "cache"),
        FACTORY_STATE_DIR=str(tmp_path / "state"),
        FACTORY_SANDBOX_TIMEOUT_S="30",
    )
    if plugins:
        plugin_dir = tmp_path / "plugins"
        plugin_dir.mkdir(exist_ok=True)
        for module, source in plugins.items():
            (plugin_dir / f"{module}.py").write_text(textwrap.dedent(source))
        environment["FACTORY_PLUGIN_DIRS"] = str(plugin_dir)
    environment.update(env or {})
    log_path = tmp_path / "server.log"
    started: list[subprocess.Popen[bytes]] = []
    with serving(environment, log_path, *arguments, started=started) as base:
        yield Served(base, tokens, log_path, url, tmp_path, started[0].pid)
