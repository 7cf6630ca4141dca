"""The server's logging set-up (server/eft_server/log.py): JSON lines off a terminal
with the level, a UTC time and the connection's bound context; the level given filters
what is below it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

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


def test_a_field_given_wins_over_the_bound_one_and_an_exception_is_rendered() -> None:
    """The JSON chain is one processor (issue 18): what structlog's ``merge_contextvars``,
    ``format_exc_info`` and ``StackInfoRenderer`` did, it does."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    structlog.contextvars.bind_contextvars(connection=7, peer="127.0.0.1:1")
    logger = structlog.get_logger("t")
    logger.info("given", peer="10.0.0.1:2")
    try:
        raise RuntimeError("the reason")
    except RuntimeError:
        logger.exception("failed")
    logger.info("traced", stack_info=True)
    given, failed, traced = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (given["peer"], given["connection"]) == ("10.0.0.1:2", 7)
    assert failed["level"] == "error" and "RuntimeError: the reason" in failed["exception"]
    assert "exc_info" not in failed
    assert traced["stack"].startswith("Stack (most recent call last)")


def test_a_json_line_to_a_binary_stream_is_one_write() -> None:
    """A real file's text layer is passed by: the line and its newline, one write."""

    class Binary(io.BytesIO):
        writes: list[bytes]

        def write(self, data: Any) -> int:
            self.writes.append(bytes(data))
            return super().write(data)

    class Text(io.StringIO):
        buffer = Binary()

    stream = Text()
    stream.buffer.writes = []
    configure_logging("json", "info", stream)
    structlog.contextvars.bind_contextvars(connection=3)
    structlog.get_logger("t").info("one")
    (line,) = stream.buffer.writes
    assert line.endswith(b"\n") and json.loads(line)["connection"] == 3
