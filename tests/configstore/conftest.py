"""Every store test runs on a real SQLite file and on the real PostgreSQL server.

PostgreSQL tests get a schema of their own (through `search_path` in the URL), dropped
afterwards, so they can run repeatedly and next to another pytest run on the same database.
They skip with a reason when PLANFORGE_TEST_POSTGRES_URL is unset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from planforge.configstore import ConfigStore
from planforge.configstore._db import normalise_url
from planforge.portfolio.planner import preset_text

POSTGRES_ENV = "PLANFORGE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is unset; set it to a PostgreSQL URL to run these tests")
    return url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = normalise_url(postgres_base_url())
    schema = f"pftest_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[ConfigStore]:
    with ConfigStore(store_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def base_toml() -> str:
    return preset_text("default")


def variant(base: str, number: int) -> str:
    """A valid configuration differing from `base` in one planner value."""
    changed = base.replace("max_sequences = 20000", f"max_sequences = {10_000 + number}")
    assert changed != base
    return changed


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"
