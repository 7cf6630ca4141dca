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
from collections import Counter, deque
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


class RecordTooSlow(Exception):
    """A record's bytes came slower than the pool's minimum rate: its buffer goes back."""

    def __init__(self, received: int, size: int, seconds: float) -> None:
        super().__init__(f"{received} of {size} bytes in {seconds:.1f} s")
        self.received, self.size, self.seconds = received, size, round(seconds, 3)


class RecordBuffers:
    """The server's big receive buffers, at most ``count`` of ``size`` bytes.

    Version 4 holds a whole record (up to 1 MiB) before it can check its tag. Without a
    bound, a thousand clients uploading at once would cost a GiB; with one, the extra
    uploads wait their turn, their bytes kept by TCP. A wait counts against the read
    timeout, like a slow peer (docs/RELIABILITY.md).

    Registration is free, so a few peers announcing records and sending nothing could
    hold every buffer (EFT-15): a buffer is taken only once the record's first bytes
    are in (``FrameReader``); while someone waits for a buffer (``contended``), a holder
    keeps its buffer only if its record's bytes have come at ``min_rate`` bytes/s since
    it took it (with ``grace`` seconds more when one is given, even uncontended: a
    slow link harms nobody while buffers are free, so by default it is left alone),
    and one owner (an authenticated identity) holds at most ``per_owner`` at once; its
    other connections wait without blocking anyone else's.

    ``plaintexts`` is its companion pool: as many buffers of the same size, for what the
    records are opened into (``FrameReader.lend_plaintext``). A file chunk's plaintext
    outlives its record buffer (it is written and hashed in a thread while the next
    record is read), so it cannot be the record's own buffer; a buffer per connection
    instead cost ``--max-connections`` MiB (issue 22: 1000 clients, 1 GiB).
    """

    def __init__(
        self,
        count: int,
        size: int,
        *,
        per_owner: int | None = None,
        min_rate: float | None = None,
        grace: float | None = None,
        plaintexts: bool = True,
    ) -> None:
        self.size = size
        self.per_owner = count if per_owner is None else per_owner
        self.min_rate, self.grace = min_rate, grace
        #: A plaintext is taken only once its record is whole and is given back when
        #: its chunk is written, so a holder is never a slow peer: no rate to check. An
        #: owner may hold twice its record share: a chunk being written and the next one.
        self.plaintexts: RecordBuffers | None = None
        if plaintexts:
            share = min(count, 2 * self.per_owner)
            self.plaintexts = RecordBuffers(count, size, per_owner=share, plaintexts=False)
        self._available = count
        self._free: list[memoryview] = []
        self._held: Counter[object] = Counter()
        #: Readers holding a buffer: told when someone must wait (``contended``).
        self._holders: dict[Any, None] = {}
        self._waiters: deque[tuple[object, asyncio.Future[memoryview]]] = deque()

    def take_now(self, owner: object = None) -> memoryview | None:
        """A buffer if one is free at once for ``owner`` (the usual case), else None."""
        if not self._available or self._held[owner] >= self.per_owner:
            return None
        self._available -= 1
        self._held[owner] += 1
        return self._free.pop() if self._free else memoryview(bytearray(self.size))

    async def take(self, owner: object = None) -> memoryview:
        """A buffer, once one is given back to ``owner``: to the waiter whose owner holds
        the fewest (the first of them), so a client with many connections waiting does
        not delay one with a single connection."""
        buffer = self.take_now(owner)
        if buffer is not None:
            return buffer
        waiter: asyncio.Future[memoryview] = asyncio.get_running_loop().create_future()
        entry = (owner, waiter)
        self._waiters.append(entry)
        if not self._available:  # the slow holders lose their grace: let them check
            for holder in list(self._holders):
                holder.contended()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result(), owner)  # handed over, then cancelled: pass on
            else:
                self._waiters.remove(entry)
            raise

    @property
    def contended(self) -> bool:
        """Every buffer is lent and someone waits for one."""
        return not self._available and bool(self._waiters)

    def holding(self, holder: Any, held: bool) -> None:
        """``holder`` (a reader with a ``contended()`` method) took or gave back a buffer."""
        if held:
            self._holders[holder] = None
        else:
            self._holders.pop(holder, None)

    def give_back(self, buffer: memoryview, owner: object = None) -> None:
        self._held[owner] -= 1
        if not self._held[owner]:
            del self._held[owner]
        entry = self._next_waiter()
        if entry is None:
            self._free.append(buffer)
            self._available += 1
            return
        self._waiters.remove(entry)
        next_owner, waiter = entry
        self._held[next_owner] += 1
        waiter.set_result(buffer)  # straight to it: no newcomer can take it in between

    def _next_waiter(self) -> tuple[object, asyncio.Future[memoryview]] | None:
        """The first waiter among those whose owner holds the fewest buffers, if that is
        under its share; the others keep their place."""
        best: tuple[object, asyncio.Future[memoryview]] | None = None
        fewest = self.per_owner
        for entry in self._waiters:
            owner, waiter = entry
            if not waiter.done() and self._held[owner] < fewest:
                best, fewest = entry, self._held[owner]
                if not fewest:  # none can hold fewer: the first such waiter it is
                    break  # (1000 clients waiting made every give-back a full scan)
        return best


class LentBuffer:
    """A plaintext buffer lent past its record (``FrameReader.lend_plaintext``): given
    back once, by whoever is done with it last."""

    def __init__(self, pool: RecordBuffers, buffer: memoryview, owner: object) -> None:
        self.buffer = buffer
        self._pool: RecordBuffers | None = pool
        self._owner = owner

    def give_back(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.give_back(self.buffer, self._owner)


class FrameReader(TakenOver):
    """A version-4 connection's read side, once taken over from StreamReader.

    ``expect(size)`` names the next bytes wanted, ``fill`` waits for them, ``view``
    shows them until the next ``expect`` or ``release``: small frames land in the
    reader's own buffer, records in one taken from the server's ``RecordBuffers``, and
    a record is complete once a plaintext buffer is taken for it too.
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
        #: Who the record buffers are counted against (``RecordBuffers.per_owner``): the
        #: connection until it speaks for a client, then the client's id.
        self.owner: object = self
        self._record_owner: object = None
        self._record_since = 0.0  # when the record buffer was taken (loop time)
        #: For the record in ``_record`` to be opened into (``lend_plaintext``).
        self._plaintext: LentBuffer | None = None

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
        """The expected bytes are all in (and a record has its plaintext buffer)."""
        return (
            self._placed
            and self._filled >= self._want
            and (self._record is None or self._plaintext is not None)
        )

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
            now = loop.time()
            left = deadline - now
            if left <= 0:
                return False
            too_slow = self._too_slow_at()
            if too_slow is not None and too_slow <= now:
                raise RecordTooSlow(self._filled, self._want, now - self._record_since)
            self._transport.resume_reading()
            woken = await self._woken(left if too_slow is None else min(left, too_slow - now))
            if not woken and loop.time() >= deadline:
                return False
        if self._record is not None and self._plaintext is None:
            return await self._take_plaintext(deadline - loop.time())
        return True

    async def _take_plaintext(self, seconds: float) -> bool:
        """A plaintext buffer for the record now whole. Only now: a record still coming
        holds none, so slow peers cannot hold them (EFT-15); and every one lent is
        given back when its chunk is written, whoever waits. When none is free the
        record waits, as its owner, within the read's time."""
        pool = self._records.plaintexts
        assert pool is not None
        owner = self.owner
        buffer = pool.take_now(owner)
        if buffer is None:
            if seconds <= 0:
                return False
            try:
                buffer = await asyncio.wait_for(pool.take(owner), seconds)
            except TimeoutError:
                return False
        self._plaintext = LentBuffer(pool, buffer, owner)
        return True

    def lend_plaintext(self) -> LentBuffer | None:
        """The complete record's plaintext buffer, now the caller's to give back (None
        for a frame in the reader's own buffer)."""
        lent, self._plaintext = self._plaintext, None
        return lent

    def _too_slow_at(self) -> float | None:
        """When the record in hand falls below the pool's minimum rate, unless more
        bytes come first; None without a record or a minimum."""
        rate = self._records.min_rate
        if self._record is None or not rate:
            return None
        # Once someone waits, a holder must have kept the rate from the start; while
        # nobody does, only a pool with a grace period checks at all (a user on a slow
        # link is no one's harm while buffers are free: their read deadline bounds them).
        if self._records.contended:
            grace = 0.0
        elif self._records.grace is None:
            return None
        else:
            grace = self._records.grace
        return self._record_since + grace + self._filled / rate

    def contended(self) -> None:
        """Someone waits for a record buffer: recheck this one's rate now."""
        self._wake()

    async def _place(self, seconds: float) -> bool:
        """Choose the buffer for the expected bytes and move pending ones into it."""
        size = self._want
        if size > len(self._small):
            if size > self._records.size:
                raise ValueError(f"a read of {size} bytes is larger than {self._records.size}")
            # A buffer only for a record that is coming: its first bytes first.
            if not self._pending and not await self._first_bytes(seconds):
                return False
            owner = self.owner
            record = self._records.take_now(owner)
            if record is None:
                try:
                    record = await asyncio.wait_for(self._records.take(owner), seconds)
                except TimeoutError:
                    return False
            self._record = self._buffer = record
            self._record_owner = owner
            self._record_since = asyncio.get_running_loop().time()
            self._records.holding(self, True)
        if self._pending:
            self._filled = taken = min(size, len(self._pending))
            self._buffer[:taken] = self._pending[:taken]
            del self._pending[:taken]
        self._placed = True
        return True

    async def _first_bytes(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for some bytes (they land in ``_pending``)."""
        while not self._pending:
            if self.error is not None:
                raise self.error
            if self.eof:
                raise asyncio.IncompleteReadError(b"", self._want)
            self._transport.resume_reading()
            if not await self._woken(seconds):
                return False
        return True

    def release(self) -> None:
        """Give the record buffer back (the last bytes are no longer needed), and its
        plaintext buffer if it was not lent."""
        self._buffer = self._small
        self._placed = False
        lent, self._plaintext = self._plaintext, None
        if lent is not None:
            lent.give_back()
        if self._record is not None:
            record, self._record = self._record, None
            self._records.holding(self, False)
            self._records.give_back(record, self._record_owner)

    # --- called by the transport -----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._placed and self._filled < self._want:
            return self._buffer[self._filled : self._want]
        # A little at a time: a connection waiting for a record buffer keeps only this.
        return _spare()[:_SMALL]

    def buffer_updated(self, nbytes: int) -> None:
        if self._placed and self._filled < self._want:
            self._filled += nbytes
            if self._filled < self._want:
                return
        else:
            self._pending += _spare()[:nbytes]
        self._transport.pause_reading()
        self._wake()
