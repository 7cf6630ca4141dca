"""Taking a connection's reads over from asyncio's StreamReader.

Every connection starts on StreamReader (its first header says which version it
speaks); each version's buffer strategy then receives straight into buffers of its
own, without StreamReader's copies. What both share is here: taking the transport over
(``take_over``), waiting for the transport's next call (``TakenOver._woken``), and a
protocol base that passes everything but the received bytes (EOF, connection loss,
write flow control) on to the StreamReaderProtocol, so that the connection's
StreamWriter, ``drain`` and ``wait_closed`` keep working as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

_NEEDED = ("set_protocol", "get_protocol", "is_reading", "pause_reading", "resume_reading")


class TakenOver(asyncio.BufferedProtocol):
    """Base of a buffer strategy's read side, in place of StreamReader's protocol."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._previous: Any = transport.get_protocol()
        self._waiter: asyncio.Future[bool] | None = None
        self.eof = False
        self.error: BaseException | None = None  # the connection's loss, or the driver's

    async def _woken(self, seconds: float) -> bool:
        """Until the transport calls (bytes, EOF, loss): True; False if ``seconds`` pass
        first. A timer on a future, not ``wait_for``: that made a task per wake-up."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, _settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

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


def take_over(
    protocol: TakenOver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    """Receive through ``protocol`` from now on; returns what StreamReader had buffered,
    to be handled first. A transport that is closed already is left as it is: the
    protocol sees the end of the stream (and its error) right after those bytes."""
    transport: Any = writer.transport  # uvloop's transports are not asyncio.Transport
    buffered = getattr(reader, "_buffer", None)
    if not all(hasattr(transport, name) for name in _NEEDED) or not isinstance(
        buffered, bytearray
    ):  # asyncio's and uvloop's transports, on every platform, have all of these
        raise RuntimeError(f"cannot receive straight from a {type(transport).__name__}")
    backlog = bytes(buffered)
    buffered.clear()
    if transport.is_closing() or reader.exception() is not None:
        protocol.eof, protocol.error = True, reader.exception()
        return backlog
    protocol.eof = reader.at_eof()
    transport.set_protocol(protocol)
    return backlog


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
