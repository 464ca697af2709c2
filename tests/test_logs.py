from __future__ import annotations

import io
import json

from planforge.logs import configure_logging, get_logger


def test_log_lines_are_json_with_the_standard_keys() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    get_logger("factory").info("discovered planners", planners=3)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["component"] == "factory"
    assert line["level"] == "info"
    assert line["msg"] == "discovered planners"
    assert line["planners"] == 3
    assert isinstance(line["ts"], float)
    assert list(line)[:4] == ["ts", "level", "component", "msg"]


def test_level_filters_lines() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    log = get_logger("sandbox")
    log.info("quiet")
    log.warning("loud", module="m")
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["loud"]
    assert lines[0]["level"] == "warning"


def test_a_credential_field_loses_its_value_and_text_fields_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    token = "pf_" + "x" * 40
    get_logger("server").info(
        f"user signed in with {token}",
        token=token,
        path=f"/ws/events?token={token}",
        details={"password": "hunter2", "url": "postgresql://u:pw@h/db", "n": 1},
    )
    text = stream.getvalue()
    assert token not in text
    assert "hunter2" not in text
    assert "u:pw" not in text
    line = json.loads(text.strip().splitlines()[-1])
    assert line["token"] == "[REDACTED]"
    assert line["path"] == "/ws/events?token=[REDACTED]"
    assert line["details"] == {
        "password": "[REDACTED]",
        "url": "postgresql://[REDACTED]",
        "n": 1,
    }


def test_a_foreign_library_logger_writes_redacted_json_lines() -> None:
    import logging

    stream = io.StringIO()
    configure_logging("INFO", stream, foreign=("uvicorn",))
    access = logging.getLogger("uvicorn.access")
    access.setLevel("INFO")
    try:
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x?token=pf_secret", "1.1", 200
        )
    finally:
        uvicorn = logging.getLogger("uvicorn")
        uvicorn.handlers.clear()
        uvicorn.propagate = True
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["component"] == "uvicorn.access"
    assert "pf_secret" not in line["msg"]
    assert "token=[REDACTED]" in line["msg"]
