"""Every test gets its own cache and state directories, so nothing leaks between tests or
into the user's real planforge directories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    root = tmp_path_factory.mktemp("planforge-home")
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("FACTORY_STATE_DIR", str(root / "state"))
    for variable in ("ALLOWED_PLANNERS", "FACTORY_EXCLUDE_PLANNERS", "FACTORY_PLUGIN_DIRS"):
        monkeypatch.delenv(variable, raising=False)
    return root
