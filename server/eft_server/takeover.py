"""Taking a connection's reads over from asyncio's StreamReader.

Every connection starts on StreamReader (its first header says which version it
speaks); each driver then receives straight into buffers of its own, without
StreamReader's copies. What both share is here: whether a transport can be taken over,
and a protocol base that passes everything but the received bytes (EOF, connection
loss, write flow control) on to the StreamReaderProtocol, so that the connection's
StreamWriter, ``drain`` and ``wait_closed`` keep working as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

_NEEDED = ("set_protocol", "get_protocol", "is_reading", "pause_reading", "resume_reading")


def stream_backlog(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytearray | None:
    """What StreamReader has buffered (to be read first), if this connection's transport
    can be taken over; None if it cannot (the driver then stays on StreamReader)."""
    transport: Any = writer.transport  # uvloop's transports are not asyncio.Transport
    buffered = getattr(reader, "_buffer", None)
    if (
        not all(hasattr(transport, name) for name in _NEEDED)
        or transport.is_closing()
        or not isinstance(buffered, bytearray)
        or reader.exception() is not None
    ):
        return None
    return buffered


class TakenOver(asyncio.BufferedProtocol):
    """Base of a driver's read side; ``install`` puts it in place of StreamReader's."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._previous: Any = transport.get_protocol()
        self._waiter: asyncio.Future[bool] | None = None
        self.eof = False
        self.error: BaseException | None = None  # the connection's loss, or the driver's

    def install(self, reader: asyncio.StreamReader) -> None:
        """Receive through this protocol from now on (after StreamReader's backlog)."""
        self.eof = reader.at_eof()
        self._transport.set_protocol(self)

    # --- called by the transport -----------------------------------------------------

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        result: bool | None = self._previous.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self.eof = True
        self._wake()
        self._previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._previous.pause_writing()

    def resume_writing(self) -> None:
        self._previous.resume_writing()

    def _wake(self) -> None:
        """Wake the connection waiting for bytes, if any."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)
