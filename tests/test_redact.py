"""What `redact_text` and `is_secret_key` hide, and what they leave alone."""

from __future__ import annotations

import pytest

from planforge.redact import REDACTED, is_secret_key, redact_text

TOKEN = "pf_" + "A1b2C3d4" * 5


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f'127.0.0.1:5 - "GET /ws/events?token={TOKEN} HTTP/1.1" 101', TOKEN),
        ("GET /plans?since=3&token=abc123&x=1", "abc123"),
        ("GET /x?access_token=q1w2e3&sort=asc", "q1w2e3"),
        ("GET /x?api_key=k9k9k9", "k9k9k9"),
        ("GET /x?password=hunter2", "hunter2"),
        ("postgresql+psycopg://postgres:pw@10.0.0.7:5432/prod failed", "10.0.0.7"),
        ("postgresql://app:s3cr3t@db.internal/prod", "s3cr3t"),
        ("redis://:redispw@cache:6379/0 is down", "redispw"),
        ("sqlite:////srv/data/planforge.db is locked", "/srv/data"),
        ("see https://bob:hunter2@example.com/x", "hunter2"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        (f"token {TOKEN} was used", TOKEN),
    ],
)
def test_credentials_in_text_are_redacted(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "GET /plans?since=3&limit=10",
        "a=b c=d",
        "Give a sqlite:/// file path or a postgresql:// URL",
        "https://example.com/docs?page=2",
        "planned 5 steps for bucket core",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "TOKEN",
        "db_password",
        "api_key",
        "apiKey",
        "X-Auth-Token",
        "client_secret",
        "PLANFORGE_DATABASE_URL",
        "redis_url",
        "dsn",
        "authorization",
        "cookie",
    ],
)
def test_credential_names_are_secret(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["author", "monkey", "url", "request_id", "since", "status", "msg", "route"]
)
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_key(name)
