"""CLI tests of the configuration store's commands run on the same databases as the store's
own tests: a real SQLite file and the real PostgreSQL server (when its URL is set)."""

from __future__ import annotations

from tests.configstore.conftest import store_url

__all__ = ["store_url"]
