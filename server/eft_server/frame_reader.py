"""Version 4's read side: every frame straight from the socket into one reused buffer.

A version-4 connection reads a header, then a payload of a size the header gave (at
most one 1 MiB record and its overhead). StreamReader copied each payload twice in
Python (into its buffer, then out as ``bytes``): 25 % of the server's time on a large
upload. Here the transport receives into the exact region the connection asked for, and
reading pauses in between, so nothing is ever copied or read ahead.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

from .takeover import TakenOver, stream_backlog

#: Each connection's own buffer: headers and handshake messages.
_SMALL = 4096
#: Room for bytes that arrive while no read is asked for (a transport may read once
#: more before a pause takes effect); they are served first by the next read.
_SPARE = 64 * 1024
_spares = threading.local()


def _spare() -> memoryview:
    """One spare buffer per event-loop thread: ``buffer_updated`` copies out of it in
    the same callback that filled it, so every connection can share it."""
    spare: memoryview | None = getattr(_spares, "buffer", None)
    if spare is None:
        spare = _spares.buffer = memoryview(bytearray(_SPARE))
    return spare


class RecordBuffers:
    """The server's big receive buffers, at most ``count`` of ``size`` bytes.

    Version 4 holds a whole record (up to 1 MiB) before it can check its tag. Without a
    bound, a thousand clients uploading at once would cost a GiB; with one, the extra
    uploads wait their turn, their bytes kept by TCP. A wait counts against the read
    timeout, like a slow peer (docs/RELIABILITY.md).
    """

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._available = count
        self._free: list[memoryview] = []
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> memoryview | None:
        """A buffer if one is free at once (the usual case), else None."""
        if not self._available:
            return None
        self._available -= 1
        return self._free.pop() if self._free else memoryview(bytearray(self.size))

    async def take(self) -> memoryview:
        """A buffer, once one is given back (no order is promised among the waiters)."""
        while (buffer := self.take_now()) is None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the turn on
                else:
                    self._waiters.remove(waiter)
                raise
        return buffer

    def give_back(self, buffer: memoryview) -> None:
        self._free.append(buffer)
        self._available += 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class FrameReader(TakenOver):
    """A version-4 connection's read side, once taken over from StreamReader.

    ``read(size)`` returns a view of the next ``size`` bytes, valid until the next
    ``read`` or ``release``: small frames land in the reader's own buffer, records in
    one taken from the server's ``RecordBuffers``.
    """

    def __init__(self, transport: Any, records: RecordBuffers, pending: bytes) -> None:
        super().__init__(transport)
        self._records = records
        self._small = memoryview(bytearray(_SMALL))
        self._record: memoryview | None = None  # taken from ``records`` for one read
        self._buffer = self._small
        self._pending = bytearray(pending)  # received before the take-over, or spare
        self._want = 0
        self._filled = 0

    @classmethod
    def take_over(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, records: RecordBuffers
    ) -> FrameReader | None:
        """Receive through a ``FrameReader`` from now on; None if this transport cannot."""
        buffered = stream_backlog(reader, writer)
        if buffered is None:
            return None
        transport: Any = writer.transport
        frames = cls(transport, records, bytes(buffered))
        buffered.clear()
        transport.pause_reading()  # until a read asks for bytes
        frames.install(reader)
        return frames

    async def read(self, size: int, seconds: float) -> memoryview:
        """The next ``size`` bytes within ``seconds`` (waiting for a record buffer
        included); raises ``IncompleteReadError`` if the stream ends, ``TimeoutError``
        if time runs out. A timer, not ``wait_for``: that made a task per read."""
        if seconds <= 0:
            raise TimeoutError
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self.release()
        if size > len(self._small):
            if size > self._records.size:
                raise ValueError(f"a read of {size} bytes is larger than {self._records.size}")
            record = self._records.take_now()
            if record is None:
                record = await asyncio.wait_for(self._records.take(), seconds)
            self._record = record
            self._buffer = record
        self._want, self._filled = size, 0
        if self._pending:
            self._filled = taken = min(size, len(self._pending))
            self._buffer[:taken] = self._pending[:taken]
            del self._pending[:taken]
        while self._filled < size:
            if self.error is not None:
                raise self.error
            if self.eof:
                partial = bytes(self._buffer[: self._filled])
                raise asyncio.IncompleteReadError(partial, size)
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_later(left, _expire, waiter)
            self._transport.resume_reading()
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._buffer[:size]

    def release(self) -> None:
        """Give the record buffer back (the last read's bytes are no longer needed)."""
        self._buffer = self._small
        if self._record is not None:
            record, self._record = self._record, None
            self._records.give_back(record)

    # --- called by the transport -----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled < self._want:
            return self._buffer[self._filled : self._want]
        return _spare()

    def buffer_updated(self, nbytes: int) -> None:
        if self._filled < self._want:
            self._filled += nbytes
            if self._filled < self._want:
                return
        else:
            self._pending += _spare()[:nbytes]
        self._transport.pause_reading()
        self._wake()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
