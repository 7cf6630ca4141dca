"""One client connection: read bytes, feed the parser, carry out the session's effects.

All protocol decisions are in ``eft_protocol.server_session``; this module only moves
bytes, touches the disk, counts and logs. Where to look for a request's handling: the
session's ``_register`` (825), ``_public_key`` (826), ``_reconnect`` (827),
``_packet_started``/``_packet_content``/``_packet_finished`` (828) and ``_crc_ok``,
``_crc_retry``, ``_crc_give_up`` (900-902).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from eft_protocol import errors
from eft_protocol import server_session as ss
from eft_protocol.codes import RequestCode
from eft_protocol.deadlines import Deadline
from eft_protocol.notices import Notice
from eft_protocol.parser import (
    NEED_DATA,
    PacketContent,
    PacketStarted,
    ParserLimits,
    RequestEvent,
    RequestParser,
    RequestReceived,
    RequestRejected,
)
from eft_protocol.registry import FileRecord
from eft_protocol.wire import ServerError

from .driver import ConnectionBase, ReadTimeout, ServerContext
from .storage import StorageError, TempUpload
from .takeover import TakenOver, stream_backlog

READ_SIZE = 256 * 1024
#: The parser buffers at most this much (plus a little) before the socket stops being read.
HIGH_WATER = 256 * 1024
_LOW_READ = 16 * 1024
_receive_buffers = threading.local()


def _receive_buffer() -> memoryview:
    """One receive buffer per event-loop thread, shared by all its connections: the
    transport fills it and hands it to ``buffer_updated`` in the same callback, which
    copies it into the parser, so no connection ever holds it across an await."""
    buffer: memoryview | None = getattr(_receive_buffers, "buffer", None)
    if buffer is None:
        buffer = _receive_buffers.buffer = memoryview(bytearray(READ_SIZE))
    return buffer


def _plaintext_buffer() -> bytearray:
    """One plaintext buffer per event-loop thread, shared by all its sessions: each
    ``WriteFile`` is written before the loop runs anything else (``_apply_one``), so no
    connection holds it across an await. Room for the largest content piece the parser
    hands out: its backlog (HIGH_WATER) plus one read, and two blocks."""
    buffer: bytearray | None = getattr(_receive_buffers, "plaintext", None)
    if buffer is None:
        buffer = _receive_buffers.plaintext = bytearray(HIGH_WATER + READ_SIZE + 64)
    return buffer


class _Incoming(TakenOver):
    """The read side of a connection once ``Connection`` takes it over from StreamReader.

    The transport receives straight into a reused buffer and each piece goes into the
    parser at once: one copy of every byte in Python, where StreamReader made three (into
    its buffer, out as ``bytes``, into the parser) and allocated a fresh buffer per read.
    """

    def __init__(self, parser: RequestParser, transport: Any) -> None:
        super().__init__(transport)
        self._parser = parser
        self._buffer = _receive_buffer()
        self._paused = False
        #: Bytes went into the parser since the connection last looked (it may have been
        #: awaiting something else then: a commit, a drain).
        self.fresh = False

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

    # --- called by the connection --------------------------------------------------

    async def wait(self, seconds: float) -> bool:
        """Until more bytes, EOF or an error arrive (at once if they already have);
        False if ``seconds`` pass first. A timer on the future, not ``wait_for``: that
        made a task per wake-up, thousands per file."""
        if self.fresh or self.eof or self.error is not None:
            return True
        if seconds <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, _settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def consumed(self) -> None:
        """The parser has handed out what it could: read again if reading was paused."""
        if self._paused and self.error is None and self._parser.buffered < HIGH_WATER // 2:
            self._paused = False
            self._transport.resume_reading()

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._transport.pause_reading()


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _take_over(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: RequestParser
) -> _Incoming | None:
    """Receive straight into the parser from now on; None if this transport cannot."""
    buffered = stream_backlog(reader, writer)
    if buffered is None:
        return None
    incoming = _Incoming(parser, writer.transport)
    # What StreamReader had buffered goes first, then the transport feeds us directly.
    parser.receive_data(buffered)
    buffered.clear()
    incoming.install(reader)
    transport: Any = writer.transport
    if not transport.is_reading() and not incoming.eof:
        transport.resume_reading()  # StreamReader may have paused it when its buffer filled
    return incoming


class Connection(ConnectionBase):
    """A version-3 connection."""

    version = 3

    def __init__(
        self,
        context: ServerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: bytes = b"",
        accepted_at: float | None = None,
    ) -> None:
        super().__init__(context, reader, writer, accepted_at)
        config = context.config
        self.parser = RequestParser(ParserLimits(max_packet_payload=config.max_packet_payload))
        self.session = ss.ServerSession(
            context.registry,
            limits=ss.ServerLimits(max_file_size=config.max_file_size),
            answer_crc_retry=config.answer_crc_retry,
            plaintext_buffer=_plaintext_buffer(),
        )
        self._upload: TempUpload | None = None
        self._initial = initial
        self._content_bytes = context.metrics.received_ciphertext.labels("3")
        self._packets = context.metrics.requests.labels(str(int(RequestCode.SEND_FILE)), "3")
        self._log_packets = str(config.log_level).lower() == "debug"

    def _on_framing_error(self, error: errors.ProtocolError) -> None:
        self._reject(error, None)

    async def _on_lost(self) -> None:
        await self._apply(self.session.connection_lost())
        self._discard_upload()

    def _next_deadline(self) -> Deadline:
        """When the next bytes must have come (the rules: ``eft_protocol.deadlines``)."""
        now, has_key = time.monotonic(), self.session.has_key
        if self.parser.in_frame:
            return self.deadlines.inside_frame(
                now,
                frame_number=self.parser.frames_started,
                frame_size=self.parser.frame_size,
                has_key=has_key,
            )
        return self.deadlines.between_frames(now, has_key=has_key)

    async def _serve(self) -> None:
        if self._initial:
            self.parser.receive_data(self._initial)
        incoming = _take_over(self.reader, self.writer, self.parser)
        if incoming is None:
            await self._serve_from_reader(b"")
        else:
            await self._serve_incoming(incoming)

    async def _serve_incoming(self, incoming: _Incoming) -> None:
        parser = self.parser
        while not self._closing:
            incoming.fresh = False  # what is in the parser now gets handled below
            while not self._closing and (event := parser.next_event()) is not NEED_DATA:
                self._count_request(event)
                await self._apply(self.session.handle(event, time.time()))
            await self.writer.drain()
            if self._closing:
                return
            incoming.consumed()
            if incoming.error is not None:
                raise incoming.error
            if incoming.fresh:
                continue  # bytes came in while a drain or a commit was awaited
            if incoming.eof:
                parser.receive_eof()
                return
            deadline = self._next_deadline()
            if not await incoming.wait(deadline.seconds):
                raise ReadTimeout(deadline.kind, deadline.seconds)

    async def _serve_from_reader(self, data: bytes) -> None:
        """The StreamReader path, for transports that cannot be taken over."""
        while not self._closing:
            if not data:
                deadline = self._next_deadline()
                read = self.reader.read(READ_SIZE)
                data = await self._read(read, deadline.kind, deadline.seconds)
            if not data:
                self.parser.receive_eof()
                return
            self.parser.receive_data(data)
            data = b""
            while not self._closing and (event := self.parser.next_event()) is not NEED_DATA:
                self._count_request(event)
                await self._apply(self.session.handle(event, time.time()))
            await self.writer.drain()

    def _count_request(self, event: RequestEvent) -> None:
        # Content pieces and packet starts come thousands of times per file: fast paths.
        if type(event) is PacketContent:
            self._content_bytes.inc(len(event.data))
            return
        if type(event) is PacketStarted:
            self._packets.inc()
            if self._log_packets:
                self.log.debug(
                    "packet", number=event.packet.packet_number, total=event.packet.total_packets
                )
            return
        if isinstance(event, RequestReceived):
            code = int(event.request.code)
        elif isinstance(event, RequestRejected):
            code = event.header.code
        else:  # PacketFinished
            return
        label = str(code) if code in RequestCode._value2member_map_ else "unknown"
        self.context.metrics.requests.labels(label, "3").inc()
        if isinstance(event, RequestReceived):
            self.log.info("request", code=code)

    async def _apply(self, effects: list[ss.Effect]) -> None:
        for effect in effects:
            try:
                await self._apply_one(effect)
            except StorageError as exc:  # logged once, by the session's notice
                self._discard_upload()  # its temporary file too: the disk may be full
                # The rest of the list assumed the storage step worked: replace it.
                failed = self.session.storage_failed(type(exc).__name__, detail=str(exc))
                await self._apply(failed)
                return
            except errors.ProtocolError as exc:  # a limit of this server, not the protocol
                self._reject(exc, None)
                return

    async def _apply_one(self, effect: ss.Effect) -> None:
        if isinstance(effect, ss.Send):
            await self._durable()
            self._send(effect.response.encode(), int(effect.response.code))
        elif isinstance(effect, ss.Rejected):
            self._reject(effect.error, effect.request_code)
        elif isinstance(effect, ss.WriteFile):
            assert self._upload is not None
            self._upload.write(effect.data)
        elif isinstance(effect, ss.BeginFile):
            self._discard_upload()
            self._upload = self.context.store.open_upload(effect.client_id, effect.storage_name)
        elif isinstance(effect, ss.DiscardFile):
            self._discard_upload()
        elif isinstance(effect, ss.CommitFile):
            await self._commit(effect)
        elif isinstance(effect, Notice):
            self._notice(effect, self.session.client_id)

    async def _commit(self, effect: ss.CommitFile) -> None:
        upload, self._upload = self._upload, None
        assert upload is not None
        path = await asyncio.to_thread(upload.commit)
        self.context.registry.save_file(
            FileRecord(
                effect.client_id, effect.storage_name, str(path), effect.size, effect.cksum, True
            )
        )

    def _discard_upload(self) -> None:
        if self._upload is not None:
            self._upload.discard()
            self._upload = None

    def _reject(self, error: errors.ProtocolError, request_code: int | None) -> None:
        self.context.metrics.protocol_errors.labels(error.reason, "3").inc()
        self.log.warning(
            "request_rejected",
            code=request_code,
            reason=error.reason,
            detail=str(error),
            closing=error.fatal,
        )
        if not self.writer.is_closing():
            self._send(ServerError().encode(), int(ServerError.code))
        if error.fatal:
            self._closing = True
