"""The server's logging set-up (server/eft_server/log.py): JSON lines off a terminal
with the level, a UTC time and the connection's bound context; the level given filters
what is below it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from eft_server.log import configure_logging


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)
        structlog.contextvars.clear_contextvars()


def test_json_lines_with_level_time_and_the_bound_context() -> None:
    stream = io.StringIO()
    configure_logging("auto", "info", stream)  # a StringIO is no terminal: JSON
    structlog.contextvars.bind_contextvars(connection=7, peer="127.0.0.1:1")
    structlog.get_logger("t").info("request", code=825)
    line = json.loads(stream.getvalue())
    assert line["event"] == "request" and line["code"] == 825
    assert (line["level"], line["connection"], line["peer"]) == ("info", 7, "127.0.0.1:1")
    assert line["timestamp"].endswith("Z"), "UTC"


def test_the_level_filters_what_is_below_it() -> None:
    stream = io.StringIO()
    configure_logging("json", "warning", stream)
    logger = structlog.get_logger("t")
    logger.info("quiet")
    logger.warning("loud")
    logger.error("louder")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "loud",
        "louder",
    ]


def test_console_lines_are_not_json() -> None:
    stream = io.StringIO()
    configure_logging("console", "debug", stream)
    structlog.get_logger("t").debug("shown", answer=42)
    text = stream.getvalue()
    assert "shown" in text and "answer=42" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
