"""structlog, configured once: JSON lines off a terminal, readable lines on one.

Connection context (connection id, peer, client id) is bound with contextvars by the
connection driver, so every line of a connection carries it without being passed along.

Every connection writes at least two lines (opened, closed), so a line's cost is part
of every handshake's (issue 18): the JSON chain is one processor (the bound context,
level and time, and the encoding with one prebuilt encoder: structlog's
``JSONRenderer`` builds a new one per line because it passes ``default=``), and every
connection logs through one logger (``driver._CONNECTION_LOG``). Lines below the level
are dropped before any processor runs (``make_filtering_bound_logger``). A JSON line to
a real file goes out as bytes in one ``write`` of the binary stream under it: ``print``
wrote the line and its newline apart, two system calls a line where the output is
unbuffered (the containers' and the lab's ``PYTHONUNBUFFERED=1``); one write is about
1.5 us of CPU less a line, 14.0 against 12.5 (issue 22: a version-3 session writes 9
lines, a version-4 one 4).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

LOG_FORMATS = ("auto", "json", "console")


def _fallback(obj: Any) -> Any:
    """What JSON cannot encode: its ``__structlog__`` if it has one, else its repr."""
    encode = getattr(obj, "__structlog__", None)
    return encode() if encode is not None else repr(obj)


class _LevelAndTime:
    """``add_log_level`` and ``TimeStamper(fmt="iso", utc=True)`` in one call; the
    date and second are formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        event_dict["level"] = "warning" if name == "warn" else name
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


def _exceptions(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """Stack and exception rendering, only for the lines that carry one."""
    if "stack_info" in event_dict:
        event_dict = structlog.processors.StackInfoRenderer()(logger, name, event_dict)
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, name, event_dict)
    return event_dict


def _json_line(as_bytes: bool) -> Any:
    """The whole JSON chain as one processor: the bound context (``merge_contextvars``),
    the level and time, an exception's text where there is one, and the encoding (as
    UTF-8 bytes for ``BytesLogger``, which adds the newline). The same line as the four
    processors it replaces, for one call a line instead of four (issue 18: every
    connection writes at least three lines)."""
    merge = structlog.contextvars.merge_contextvars
    stamp = _LevelAndTime()
    encode = json.JSONEncoder(default=_fallback).encode

    def render(logger: WrappedLogger, name: str, event_dict: EventDict) -> str | bytes:
        event_dict = stamp(logger, name, merge(logger, name, event_dict))
        if "exc_info" in event_dict or "stack_info" in event_dict:
            event_dict = _exceptions(logger, name, event_dict)
        line = encode(event_dict)
        return line.encode() if as_bytes else line

    return render


def _binary_stream(stream: TextIO) -> Any:
    """The binary stream under a real file's text layer, or None (a StringIO)."""
    binary = getattr(stream, "buffer", None)
    if binary is None or not hasattr(binary, "write"):
        return None
    stream.flush()  # what the text layer holds goes first
    return binary


#: Bound loggers are cached on first use (a line costs less). A test process configures
#: many in-process servers one after another, at several levels: it turns caching off
#: (tests/conftest.py), or a module's logger would keep the level filter of whichever
#: configuration it was first used under.
CACHE_LOGGERS = True


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    processors: list[Any]
    factory: Any = structlog.PrintLoggerFactory(stream)
    binary = _binary_stream(stream) if fmt == "json" else None
    if binary is not None:
        processors = [_json_line(as_bytes=True)]
        factory = structlog.BytesLoggerFactory(binary)
    elif fmt == "json":
        processors = [_json_line(as_bytes=False)]
    else:
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=factory,
        cache_logger_on_first_use=CACHE_LOGGERS,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("eft").bind(**context)
