"""A writer killed with SIGKILL mid-stream loses nothing it acknowledged and corrupts nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from planforge.configstore import ConfigStore
from tests.configstore.conftest import is_postgres

# Prints "config_id version" for each version once both its creation and its bucket
# assignment were committed: those are the writes it acknowledged.
WRITER = """
import sys
from planforge.configstore import ConfigStore
from planforge.portfolio.planner import preset_text

base = preset_text("default")
store = ConfigStore(sys.argv[1])
store.migrate()
print("ready", flush=True)
for i in range(1_000_000):
    created = store.create_new_version("durable", "Durable", base + f"\\n# write {i}\\n")
    store.assign_config_to_bucket("core", created.config.id, "writer", f"write {i}")
    print(created.config.id, created.config.version, flush=True)
"""


def _kill_mid_stream(url: str, acknowledged_before_kill: int) -> list[tuple[int, int]]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[tuple[int, int]] = []
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready", writer.stderr
        while len(acknowledged) < acknowledged_before_kill:
            line = writer.stdout.readline()
            assert line, (
                f"the writer stopped early: {writer.stderr.read() if writer.stderr else ''}"
            )
            config_id, version = line.split()
            acknowledged.append((int(config_id), int(version)))
        os.kill(writer.pid, signal.SIGKILL)
        rest, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by the kill was never acknowledged
            acknowledged.append((int(parts[0]), int(parts[1])))
    return acknowledged


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("store_url", "kill_after"),
    [("sqlite", 7), ("sqlite", 31), ("postgresql", 7)],
    indirect=["store_url"],
)
def test_a_killed_writer_loses_no_acknowledged_write(store_url: str, kill_after: int) -> None:
    acknowledged = _kill_mid_stream(store_url, kill_after)
    assert len(acknowledged) >= kill_after

    if not is_postgres(store_url):
        database = make_url(store_url).database
        assert database is not None
        assert Path(database).is_file()
        with sqlite3.connect(database) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []

    with ConfigStore(store_url) as store:
        history = {c.id: c for c in store.get_version_history("durable")}
        for config_id, version in acknowledged:
            assert history[config_id].version == version
        versions = sorted(c.version for c in history.values())
        assert versions == list(range(1, len(versions) + 1))  # no gap, even for the cut write
        assigned = {a.config_id for a in store.bucket_history("core")}
        assert {config_id for config_id, _ in acknowledged} <= assigned
        assert store.get_active("durable").version == versions[-1]
        # and the store still takes writes after the crash
        after = store.create_new_version("durable", "Durable", "# after the crash\n[planner]\n")
        assert after.config.version == versions[-1] + 1
