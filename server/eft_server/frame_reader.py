"""Version 4's buffer strategy: every frame straight from the socket into one buffer.

A version-4 connection reads a header, then a payload of a size the header gave (at
most one 1 MiB record and its overhead). StreamReader copied each payload twice in
Python (into its buffer, then out as ``bytes``): 25 % of the server's time on a large
upload. Here the transport receives into the exact region the connection asked for
(``expect``, then the loop's ``fill``), and reading pauses in between, so nothing is
ever copied or read ahead.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

from .takeover import TakenOver, take_over

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

    ``expect(size)`` names the next bytes wanted, ``fill`` waits for them, ``view``
    shows them until the next ``expect`` or ``release``: small frames land in the
    reader's own buffer, records in one taken from the server's ``RecordBuffers``.
    """

    def __init__(self, transport: Any, records: RecordBuffers) -> None:
        super().__init__(transport)
        self._records = records
        self._small = memoryview(bytearray(_SMALL))
        self._record: memoryview | None = None  # taken from ``records`` for one read
        self._buffer = self._small
        self._pending = bytearray()  # received before the take-over, or spare
        self._want = 0
        self._filled = 0
        self._placed = False  # the buffer for ``_want`` is chosen, pending bytes moved in

    @classmethod
    def take_over(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        records: RecordBuffers,
        first_header: bytes,
    ) -> FrameReader:
        """Receive through a ``FrameReader`` from now on, ``first_header`` (read before
        the version was known) already in: ``complete`` and in ``view``."""
        transport: Any = writer.transport
        frames = cls(transport, records)
        frames._pending += take_over(frames, reader, writer)
        if not transport.is_closing():
            transport.pause_reading()  # until a fill asks for bytes
        size = len(first_header)
        frames._small[:size] = first_header
        frames._want = frames._filled = size
        frames._placed = True
        return frames

    @property
    def complete(self) -> bool:
        """The expected bytes are all in."""
        return self._placed and self._filled >= self._want

    def view(self) -> memoryview:
        return self._buffer[: self._want]

    def expect(self, size: int) -> None:
        """The next bytes wanted are ``size`` more (the last ones are no longer needed)."""
        self.release()
        self._want, self._filled, self._placed = size, 0, False

    async def fill(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for the expected bytes (for a record buffer too);
        False if time runs out first. Raises ``IncompleteReadError`` if the stream ends
        before them."""
        if seconds <= 0:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if not self._placed and not await self._place(seconds):
            return False
        while self._filled < self._want:
            if self.error is not None:
                raise self.error
            if self.eof:
                partial = bytes(self._buffer[: self._filled])
                raise asyncio.IncompleteReadError(partial, self._want)
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._transport.resume_reading()
            if not await self._woken(left):
                return False
        return True

    async def _place(self, seconds: float) -> bool:
        """Choose the buffer for the expected bytes and move pending ones into it."""
        size = self._want
        if size > len(self._small):
            if size > self._records.size:
                raise ValueError(f"a read of {size} bytes is larger than {self._records.size}")
            record = self._records.take_now()
            if record is None:
                try:
                    record = await asyncio.wait_for(self._records.take(), seconds)
                except TimeoutError:
                    return False
            self._record = self._buffer = record
        if self._pending:
            self._filled = taken = min(size, len(self._pending))
            self._buffer[:taken] = self._pending[:taken]
            del self._pending[:taken]
        self._placed = True
        return True

    def release(self) -> None:
        """Give the record buffer back (the last bytes are no longer needed)."""
        self._buffer = self._small
        self._placed = False
        if self._record is not None:
            record, self._record = self._record, None
            self._records.give_back(record)

    # --- called by the transport -----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._placed and self._filled < self._want:
            return self._buffer[self._filled : self._want]
        return _spare()

    def buffer_updated(self, nbytes: int) -> None:
        if self._placed and self._filled < self._want:
            self._filled += nbytes
            if self._filled < self._want:
                return
        else:
            self._pending += _spare()[:nbytes]
        self._transport.pause_reading()
        self._wake()
