"""Hostile inputs against a real `planforge serve` on SQLite and on PostgreSQL.

The same request gets the same clear answer from both databases (a NUL character used to
be a 503 showing the database URL on PostgreSQL and a 200 on SQLite), and request bodies are
strict about types.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest
from sqlalchemy import create_engine, text

from planforge.configstore import ConfigStore
from planforge.configstore._db import normalise_url
from planforge.portfolio.planner import preset_text
from tests.server._served import Served, http, served_planforge

POSTGRES_ENV = "PLANFORGE_TEST_POSTGRES_URL"


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL schema of this module's own, dropped afterwards."""
    configured = os.environ.get(POSTGRES_ENV, "").strip()
    if not configured:
        pytest.skip(f"{POSTGRES_ENV} is unset; set it to run the PostgreSQL server tests")
    base = normalise_url(configured)
    schema = f"pftest_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp(f"inputs-{request.param}")
    database_url = (
        nullcontext(f"sqlite:///{tmp_path / 'store.db'}")
        if request.param == "sqlite"
        else postgres_schema_url()
    )
    with database_url as database:
        with ConfigStore(database) as store:
            config = store.create_new_version("core", "Core", preset_text("default")).config
            store.assign_config_to_bucket("core", config.id)
        users = {"admin": "admin", "operator": "operator"}
        with served_planforge(tmp_path, users=users, database=database) as running:
            yield running


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/buckets/b%00x/config", 404, "BucketNotFound"),
        ("/buckets/b%00x/history", 200, None),
        ("/configs/co%00re/history", 200, None),
        ("/presets/def%00ault", 404, "PresetNotFound"),
        ("/presets?tag=bal%00anced", 200, None),
        ("/planner/health/b%00x", 404, "BucketNotFound"),
    ],
)
def test_a_nul_character_in_a_path_gets_the_same_answer_on_both_databases(
    served: Served, path: str, status: int, error: str | None
) -> None:
    got, body = http("GET", served.base + path, served.tokens["admin"])
    assert got == status, body
    if error is not None:
        assert body["error"] == error
    else:
        assert isinstance(body, list)
        assert not body
    assert "postgresql" not in str(body)


def test_a_nul_character_in_a_field_is_a_400_naming_it_on_both_databases(
    served: Served,
) -> None:
    status, body = http(
        "POST",
        f"{served.base}/buckets/core/rollback",
        served.tokens["admin"],
        {"name": "core", "version": 1, "reason": "why\x00not"},
    )
    assert status == 400, body
    assert "reason" in body["message"]
    assert "NUL" in body["message"]
    status, body = http("GET", f"{served.base}/buckets/core/config", served.tokens["admin"])
    assert status == 200
    assert body["version"] == 1


@pytest.mark.parametrize(
    ("path", "role", "payload", "field"),
    [
        ("/plans", "operator", {"objective": "x", "timeout_s": True}, "timeout_s"),
        ("/plans", "operator", {"objective": "x", "planner": 5}, "planner"),
        ("/planners/select", "operator", {"objective": "x", "strict": 0}, "strict"),
        ("/buckets/core/assign", "admin", {"config_id": "1"}, "config_id"),
        ("/presets/default/rate", "admin", {"rating": 4.0}, "rating"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_422_naming_the_field(
    served: Served, path: str, role: str, payload: dict[str, object], field: str
) -> None:
    token = served.tokens[role]
    status, body = http("POST", served.base + path, token, payload)
    assert status == 422, body
    assert field in [str(part) for problem in body["problems"] for part in problem["loc"]]
