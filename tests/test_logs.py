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
