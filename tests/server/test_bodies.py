"""Hostile documents against a real `planforge serve`: deep nesting and non-finite numbers.

Each answer is a clear 4xx naming the limit or the field, the keep-alive connection stays
usable, and the server writes one short log line per request, never a traceback.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server._served import Served, served_planforge

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"
DEEP_ARRAY = "a = " + "[" * 3000 + "]" * 3000
DEEP_TABLE = "b = " + "{b = " * 1000 + "1" + "}" * 1000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("bodies"), users={"admin": "admin", "operator": "operator"}
    ) as running:
        yield running


def connect_to(served: Served) -> http.client.HTTPConnection:
    host, _, port = served.base.removeprefix("http://").partition(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def headers(served: Served, role: str, content_type: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[role]}", "Content-Type": content_type}


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def toml_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(route, role, body) for every JSON route that takes a TOML document."""
    context = json.loads(EXAMPLE.read_text())
    return [
        ("/configs", "admin", {"name": "deep", "title": "Deep", "toml": "{}"}),
        ("/configs/dry-run", "operator", {"toml": "{}"}),
        ("/presets", "admin", {"name": "deep", "toml": "{}"}),
        ("/abtest", "operator", {"config_a": "{}", "config_b": "default", "context": context}),
    ]


@pytest.mark.parametrize("document", [DEEP_ARRAY, DEEP_TABLE], ids=["array", "table"])
@pytest.mark.parametrize(("route", "role", "template"), toml_requests(), ids=lambda x: str(x))
def test_a_deeply_nested_toml_document_is_a_400_naming_the_limit(
    served: Served, document: str, route: str, role: str, template: dict[str, Any]
) -> None:
    body = json.loads(json.dumps(template).replace('"{}"', json.dumps(document), 1))
    connection = connect_to(served)
    try:
        status, answer = exchange(
            connection, "POST", route, json.dumps(body).encode(), headers(served, role)
        )
        assert status == 400, answer
        assert "PLANFORGE_MAX_NESTING" in answer["message"]
        assert "32" in answer["message"]
        # the same keep-alive connection still serves the next request
        status, _ = exchange(connection, "GET", "/livez", None, {})
        assert status == 200
    finally:
        connection.close()


def test_a_deeply_nested_toml_upload_is_a_400_naming_the_limit(served: Served) -> None:
    boundary = "pfboundary"
    fields = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("name", "deep"), ("title", "Deep"))
    )
    form = (
        f"{fields}--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="d.toml"\r\n'
        f"Content-Type: application/toml\r\n\r\n{DEEP_ARRAY}\r\n--{boundary}--\r\n"
    ).encode()
    connection = connect_to(served)
    try:
        status, answer = exchange(
            connection,
            "POST",
            "/configs/import",
            form,
            headers(served, "admin", f"multipart/form-data; boundary={boundary}"),
        )
        assert status == 400, answer
        assert "PLANFORGE_MAX_NESTING" in answer["message"]
    finally:
        connection.close()


def test_a_deeply_nested_json_body_is_a_400_and_the_connection_survives(
    served: Served,
) -> None:
    deep = '{"objective": "x", "context": {"a": ' + "[" * 3000 + "]" * 3000 + "}}"
    connection = connect_to(served)
    try:
        status, answer = exchange(
            connection, "POST", "/plans", deep.encode(), headers(served, "operator")
        )
        assert status == 400, answer
        assert answer["error"] == "DocumentTooDeep"
        assert "PLANFORGE_MAX_NESTING" in answer["message"]
        status, _ = exchange(connection, "GET", "/livez", None, {})
        assert status == 200
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("spelled", "field"),
    [
        ('{"objective": "x", "context": {"cash": NaN}}', "context.cash"),
        ('{"objective": "x", "context": {"fx": [1, Infinity]}}', "context.fx[1]"),
        ('{"objective": "x", "context": {"p": {"q": -1e400}}}', "context.p.q"),
    ],
)
def test_a_non_finite_number_in_a_body_is_a_422_naming_the_field(
    served: Served, spelled: str, field: str
) -> None:
    connection = connect_to(served)
    try:
        status, answer = exchange(
            connection, "POST", "/plans", spelled.encode(), headers(served, "operator")
        )
    finally:
        connection.close()
    assert status == 422, answer
    assert answer["error"] == "NonFiniteNumber"
    assert field in answer["message"]


def test_hostile_documents_leave_short_log_lines_and_no_traceback(served: Served) -> None:
    connection = connect_to(served)
    try:
        for _ in range(3):
            body = json.dumps({"toml": DEEP_ARRAY}).encode()
            status, _ = exchange(
                connection, "POST", "/configs/dry-run", body, headers(served, "operator")
            )
            assert status == 400
    finally:
        connection.close()
    text = served.log_path.read_text()
    assert "Traceback" not in text
    assert "RecursionError" not in text
    assert max(len(line) for line in text.splitlines()) < 2000


def test_a_large_body_is_checked_off_the_event_loop_with_the_same_answers(served: Served) -> None:
    """Bodies over 64 KiB are read in the thread pool: the same 400 and 422 come back."""
    padding = ", ".join(f'"k{index}": {index}.5' for index in range(12_000))
    bodies = {
        400: '{"objective": "x", "context": {' + padding + ', "a": ' + "[" * 100 + "]" * 100 + "}}",
        422: '{"objective": "x", "context": {' + padding + ', "last": NaN}}',
    }
    connection = connect_to(served)
    try:
        for status, text in bodies.items():
            assert len(text) > 64 * 1024
            got, answer = exchange(
                connection, "POST", "/plans", text.encode(), headers(served, "operator")
            )
            assert got == status, answer
        assert answer["field"] == "context.last"
    finally:
        connection.close()
