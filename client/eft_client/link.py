"""One TCP connection to the server, for either protocol version.

Sends are bounded in time (a server that stops reading would otherwise hold the client
for ever, EFT-21) and reads are measured against one deadline per answer; every network
failure becomes a ``ConnectionLost`` or a ``CannotConnect``, which the reconnect rule
(``reconnect.py``) knows. The bounds are ``asyncio.timeout``, not ``wait_for``: on
Python 3.11 ``wait_for`` swallows a cancellation (Ctrl-C) that arrives as the awaited
step completes, and the client then waited out its timeout instead of exiting 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

from .errors import CannotConnect, ConnectionLost
from .settings import ClientSettings

#: Pieces one ``sendmsg`` may carry (the kernel refuses more: EMSGSIZE).
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)

#: Sees every byte a connection sends, in order (the lab damages chosen attempts with it).
OutgoingFilter = Callable[[bytes], bytes]


class Link:
    """Frames out, bytes of answers in."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        outgoing_filter: OutgoingFilter | None = None,
        *,
        sends_views: bool = False,
    ):
        self.reader, self.writer, self.timeout = reader, writer, timeout
        #: A second descriptor of the same socket, to send pieces with one ``sendmsg``
        #: (``_send_gathered``): Python 3.11's transport joins them into a new object
        #: first, a copy of every 1 MiB record. A dup, because the loop refuses to
        #: watch a descriptor its transport owns; the two share one open socket.
        self._gather: socket.socket | None = None
        if sends_views:
            # ``send`` returns only once the kernel has taken every byte, so a caller may
            # reuse the buffers it sent from (the transport keeps views, not copies).
            writer.transport.set_write_buffer_limits(high=0)
            raw = writer.get_extra_info("socket")
            if raw is not None and hasattr(socket.socket, "sendmsg"):
                self._gather = socket.socket(fileno=os.dup(raw.fileno()))
                self._gather.setblocking(False)
        self.outgoing_filter = outgoing_filter
        #: The next answer's first bytes, read while a file streams: the server may
        #: answer before the last chunk (a storage error), and that answer must be
        #: read, not met as a reset on a later send.
        self._ahead: asyncio.Future[bytes] | None = None
        #: Some answer came on this connection: a close before any says the server
        #: refused us at once (it is full, or stopping).
        self._answered_once = False

    @classmethod
    async def open(
        cls,
        settings: ClientSettings,
        outgoing_filter: OutgoingFilter | None = None,
        *,
        sends_views: bool = False,
    ) -> Link:
        try:
            async with asyncio.timeout(settings.connect_timeout):
                local = None if settings.source_address is None else (settings.source_address, 0)
                reader, writer = await asyncio.open_connection(
                    settings.host, settings.port, local_addr=local
                )
        except TimeoutError:
            raise CannotConnect(
                f"no answer from {settings.host}:{settings.port} in {settings.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise CannotConnect(
                f"cannot connect to {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from None
        return cls(
            reader, writer, settings.response_timeout, outgoing_filter, sends_views=sends_views
        )

    async def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Write frames, or pieces of frames in order, with one call; then drain."""
        if not frames:
            return
        if self.outgoing_filter is not None:
            frames = [self.outgoing_filter(bytes(frame)) for frame in frames]
        try:
            if self._gather is not None and not self.writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.timeout):
                    await self._send_gathered(frames)
            else:
                self.writer.writelines(frames)
                async with asyncio.timeout(self.timeout):
                    await self.writer.drain()
        except TimeoutError:
            raise ConnectionLost(
                f"the server did not take our data in {self.timeout:g} s"
            ) from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            if isinstance(exc, ConnectionResetError | BrokenPipeError):
                self._closed_before_answering()
            raise ConnectionLost(f"the connection broke while sending: {exc}") from None

    async def _send_gathered(self, frames: Sequence[bytes | memoryview]) -> None:
        """Every piece to the kernel without joining them: ``sendmsg`` (at most
        ``_IOV_MAX`` pieces a call), and when the socket's buffer is full, the piece it
        stopped in as the socket takes it. Returns once the kernel holds every byte, so
        the caller may reuse its buffers."""
        gather = self._gather
        assert gather is not None
        views = [memoryview(frame) for frame in frames]
        loop = asyncio.get_running_loop()
        index = 0
        while index < len(views):
            batch = views[index : index + _IOV_MAX]
            try:
                sent = gather.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                sent = 0
            for view in batch:
                if sent < len(view):
                    break
                sent -= len(view)
                index += 1
            else:
                continue  # the whole batch went
            await loop.sock_sendall(gather, views[index][sent:])
            index += 1

    def answer_deadline(self) -> float:
        """When the answer awaited from now is due. One deadline for the whole answer,
        not one per read: a server that trickles a byte at a time would otherwise hold
        us for its size times the timeout."""
        return asyncio.get_running_loop().time() + self.timeout

    def read_ahead(self, size: int) -> None:
        """Read the next answer's first ``size`` bytes in the background from now on."""
        if self._ahead is None:
            self._ahead = asyncio.ensure_future(self.reader.readexactly(size))

    @property
    def answered(self) -> bool:
        """The server has answered while we were still sending."""
        return self._ahead is not None and self._ahead.done()

    async def read_some(self, deadline: float) -> bytes:
        data = await self._until(self.reader.read(4096), deadline)
        if not data:
            self._closed_before_answering()
            raise ConnectionLost("the server closed the connection")
        self._answered_once = True
        return data

    async def read_exactly(self, size: int, deadline: float) -> bytes:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            return await self._until(asyncio.shield(ahead), deadline)
        buffered = getattr(self.reader, "_buffer", None)
        if buffered is not None and 0 < size <= len(buffered):
            # Already received (a group's answers come together): no timer to arm and
            # cancel, which cost more than the read for 3 answers a small file (issue 25).
            self._answered_once = True
            return await self.reader.readexactly(size)
        return await self._until(self.reader.readexactly(size), deadline)

    async def _until(self, read: Awaitable[bytes], deadline: float) -> bytes:
        try:
            async with asyncio.timeout_at(deadline):
                data = await read
        except TimeoutError:
            raise ConnectionLost(f"the server did not answer in {self.timeout:g} s") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                self._closed_before_answering()
            raise ConnectionLost("the server closed the connection") from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            if isinstance(exc, ConnectionResetError):
                self._closed_before_answering()
            raise ConnectionLost(f"the connection broke: {exc}") from None
        if data:
            self._answered_once = True
        return data

    def _closed_before_answering(self) -> None:
        """The server closed before its first answer: what a full server does (it has no
        answer for that in version 3), so say so."""
        if not self._answered_once:
            raise ConnectionLost(
                "the server closed the connection before answering (it may be full)"
            )

    async def close(self) -> None:
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None
        if self._gather is not None:
            self._gather.close()  # the dup only: the transport closes the socket
            self._gather = None
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):  # already broken: nothing to do
            await self.writer.wait_closed()
