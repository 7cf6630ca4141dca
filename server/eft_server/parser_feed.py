"""Version 3's buffer strategy: received bytes go straight into the streaming parser.

The transport receives into one reused buffer and each piece goes into the parser at
once: one copy of every byte in Python, where StreamReader made three (into its buffer,
out as ``bytes``, into the parser) and allocated a fresh buffer per read. The connection
loop (``driver.ConnectionBase._serve``) takes the parser's events out and calls ``fill``
when it needs more.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.parser import RequestParser

from .takeover import TakenOver, take_over

READ_SIZE = 256 * 1024
#: The parser buffers at most this much (plus a little) before the socket stops being read.
HIGH_WATER = 256 * 1024
_LOW_READ = 16 * 1024
_buffers = threading.local()


def _receive_buffer() -> memoryview:
    """One receive buffer per event-loop thread, shared by all its connections: the
    transport fills it and hands it to ``buffer_updated`` in the same callback, which
    copies it into the parser, so no connection ever holds it across an await."""
    buffer: memoryview | None = getattr(_buffers, "receive", None)
    if buffer is None:
        buffer = _buffers.receive = memoryview(bytearray(READ_SIZE))
    return buffer


def plaintext_buffer() -> bytearray:
    """One plaintext buffer per event-loop thread, shared by all its sessions: each
    ``WriteFile`` is written before the loop runs anything else (the connection's
    ``_apply_one``), so no connection holds it across an await. Room for the largest
    content piece the parser hands out: its backlog (HIGH_WATER) plus one read, and two
    blocks."""
    buffer: bytearray | None = getattr(_buffers, "plaintext", None)
    if buffer is None:
        buffer = _buffers.plaintext = bytearray(HIGH_WATER + READ_SIZE + 64)
    return buffer


class ParserFeed(TakenOver):
    """A version-3 connection's read side, once taken over from StreamReader."""

    def __init__(self, parser: RequestParser, transport: Any) -> None:
        super().__init__(transport)
        self._parser = parser
        self._buffer = _receive_buffer()
        self._paused = False
        #: Bytes went into the parser since the loop last looked (it may have been
        #: awaiting something else then: a commit, a drain).
        self.fresh = False

    @classmethod
    def take_over(
        cls,
        parser: RequestParser,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: bytes,
    ) -> ParserFeed:
        """Feed ``parser`` from now on: ``initial`` (read before the version was known)
        and what StreamReader had buffered go first."""
        feed = cls(parser, writer.transport)
        if initial:
            parser.receive_data(initial)
        parser.receive_data(take_over(feed, reader, writer))
        transport: Any = writer.transport
        if not feed.eof and not transport.is_reading():
            transport.resume_reading()  # StreamReader may have paused it when its buffer filled
        return feed

    async def fill(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for bytes the parser has not been given; False if
        time runs out first. At the end of the stream: raises ``TruncatedMessage``
        inside a frame, ``IncompleteReadError`` between two (as every session ends)."""
        self._consumed()
        if self.error is not None:
            raise self.error
        if not self.fresh:
            if self.eof:
                self._parser.receive_eof()
                raise asyncio.IncompleteReadError(b"", REQUEST_HEADER.size)
            if seconds <= 0 or not await self._woken(seconds):
                return False
        self.fresh = False
        return True

    def _consumed(self) -> None:
        """The parser has handed out what it could: read again if reading was paused."""
        if self._paused and self.error is None and self._parser.buffered < HIGH_WATER // 2:
            self._paused = False
            self._transport.resume_reading()

    # --- called by the transport ---------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        # Never much more than HIGH_WATER waiting in the parser, whatever the read size.
        room = max(_LOW_READ, HIGH_WATER - self._parser.buffered)
        return self._buffer[:room] if room < len(self._buffer) else self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._parser.receive_data(self._buffer[:nbytes])
        except errors.FramingError as exc:  # the parser already failed: stop reading
            self.error = exc
        self.fresh = True
        if self.error is not None or self._parser.buffered >= HIGH_WATER:
            self._pause()
        self._wake()

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._transport.pause_reading()
