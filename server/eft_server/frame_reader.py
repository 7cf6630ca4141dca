"""Version 4's read side: every frame straight from the socket into one reused buffer.

A version-4 connection reads a header, then a payload of a size the header gave (at
most one 1 MiB record and its overhead). StreamReader copied each payload twice in
Python (into its buffer, then out as ``bytes``): 25 % of the server's time on a large
upload. Here the transport receives into the exact region the connection asked for, and
reading pauses in between, so nothing is ever copied or read ahead.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: The buffer a connection starts with; it grows to the largest read when a file comes.
_INITIAL = 4096
#: Room for bytes that arrive while no read is asked for (a transport may read once
#: more before a pause takes effect); they are served first by the next read.
_SPARE = 64 * 1024


class FrameReader(asyncio.BufferedProtocol):
    """Take over a connection's transport from its StreamReaderProtocol.

    ``read(size)`` returns a view of the next ``size`` bytes (at most ``capacity``),
    valid until the next ``read``. EOF, connection loss and write flow control still go
    to the previous protocol, so the connection's StreamWriter keeps working as before.
    """

    def __init__(self, transport: Any, previous: Any, capacity: int, pending: bytes) -> None:
        self._transport = transport
        self._previous = previous
        self._capacity = capacity
        self._buffer = memoryview(bytearray(min(_INITIAL, capacity)))
        self._spare = memoryview(bytearray(_SPARE))
        self._pending = bytearray(pending)  # received before the take-over, or spare
        self._want = 0
        self._filled = 0
        self._waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.error: BaseException | None = None

    @classmethod
    def take_over(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, capacity: int
    ) -> FrameReader | None:
        """Receive through a ``FrameReader`` from now on; None if this transport cannot."""
        transport: Any = writer.transport  # uvloop's transports are not asyncio.Transport
        buffered = getattr(reader, "_buffer", None)
        needed = ("set_protocol", "get_protocol", "pause_reading", "resume_reading")
        if (
            not all(hasattr(transport, name) for name in needed)
            or transport.is_closing()
            or not isinstance(buffered, bytearray)
            or reader.exception() is not None
        ):
            return None
        frames = cls(transport, transport.get_protocol(), capacity, bytes(buffered))
        buffered.clear()
        frames.eof = reader.at_eof()
        transport.pause_reading()  # until a read asks for bytes
        transport.set_protocol(frames)
        return frames

    async def read(self, size: int) -> memoryview:
        """The next ``size`` bytes; raises ``IncompleteReadError`` if the stream ends."""
        if size > len(self._buffer):
            if size > self._capacity:
                raise ValueError(f"a read of {size} bytes is larger than {self._capacity}")
            # Only connections that send files get the big buffer.
            self._buffer = memoryview(bytearray(self._capacity))
        self._want, self._filled = size, 0
        if self._pending:
            self._filled = taken = min(size, len(self._pending))
            self._buffer[:taken] = self._pending[:taken]
            del self._pending[:taken]
        loop = asyncio.get_running_loop()
        while self._filled < size:
            if self.error is not None:
                raise self.error
            if self.eof:
                partial = bytes(self._buffer[: self._filled])
                raise asyncio.IncompleteReadError(partial, size)
            self._waiter = loop.create_future()
            self._transport.resume_reading()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer[:size]

    # --- called by the transport -----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled < self._want:
            return self._buffer[self._filled : self._want]
        return self._spare

    def buffer_updated(self, nbytes: int) -> None:
        if self._filled < self._want:
            self._filled += nbytes
            if self._filled < self._want:
                return
        else:
            self._pending += self._spare[:nbytes]
        self._transport.pause_reading()
        self._wake()

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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
