"""A version-3 connection: the parser's events into the session, its effects onto disk.

All protocol decisions are in ``eft_protocol.server_session``; the loop is
``driver.ConnectionBase._serve``, the buffer strategy ``parser_feed.ParserFeed``; this
module only maps the session's effects onto storage and the registry, counts and logs.
Where to look for a request's handling: the session's ``_register`` (825),
``_public_key`` (826), ``_reconnect`` (827), ``_packet_started``/``_packet_content``/
``_packet_finished`` (828) and ``_crc_ok``, ``_crc_retry``, ``_crc_give_up`` (900-902).
"""

from __future__ import annotations

import asyncio

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

from .driver import ConnectionBase, RegistrationLost, ServerContext
from .file_store import Upload
from .parser_feed import ParserFeed, plaintext_buffer
from .storage import StorageError


class Connection(ConnectionBase[ss.Effect]):
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
            plaintext_buffer=plaintext_buffer(),
        )
        self._upload: Upload | None = None
        self._initial = initial
        self._content_bytes = context.metrics.received("3")
        self._packets = context.metrics.request(str(int(RequestCode.SEND_FILE)), "3")
        self._log_packets = str(config.log_level).lower() == "debug"

    def _on_framing_error(self, error: errors.ProtocolError) -> None:
        self._reject(error, None)

    async def _on_lost(self) -> None:
        await self._apply(self.session.connection_lost())
        await self._discard_upload()

    def _take_over(self) -> ParserFeed:
        return ParserFeed.take_over(self.parser, self.reader, self.writer, self._initial)

    def _take(self, now: float) -> list[ss.Effect] | None:
        event = self.parser.next_event()
        if event is NEED_DATA:
            return None
        self._count_request(event)
        return self.session.handle(event, now)

    def _deadline(self, now: float) -> Deadline:
        """Inside a frame, its rate counts; between two, idleness (``deadlines``)."""
        has_key = self.session.has_key
        if self.parser.in_frame:
            return self.deadlines.inside_frame(
                now,
                frame_number=self.parser.frames_started,
                frame_size=self.parser.frame_size,
                has_key=has_key,
            )
        return self.deadlines.between_frames(now, has_key=has_key)

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
        self.context.metrics.request(label, "3").inc()
        if isinstance(event, RequestReceived):
            # Debug: the notice line that follows says what came of it (registered,
            # key_exchanged, transfer); three lines of a session's nine (issue 22).
            self.log.debug("request", code=code)

    async def _storage_failed(self, error: StorageError) -> list[ss.Effect]:
        if isinstance(error, RegistrationLost):
            return self.session.registration_lost()
        await self._discard_upload()  # its temporary file too: the disk may be full
        return self.session.storage_failed(type(error).__name__, detail=str(error))

    def _refuse(self, error: errors.ProtocolError) -> None:
        self._reject(error, None)

    async def _apply_one(self, effect: ss.Effect) -> None:
        if isinstance(effect, ss.Send):
            await self._durable()
            self._send(effect.response.encode(), int(effect.response.code))
        elif isinstance(effect, ss.Rejected):
            self._reject(effect.error, effect.request_code)
        elif isinstance(effect, ss.WriteFile):
            assert self._upload is not None
            await self._upload.write(effect.data)
        elif isinstance(effect, ss.BeginFile):
            await self._discard_upload()
            self._upload = await self.context.store.open_upload(
                effect.client_id, effect.storage_name
            )
        elif isinstance(effect, ss.DiscardFile):
            await self._discard_upload()
        elif isinstance(effect, ss.CommitFile):
            await self._commit(effect)
        elif isinstance(effect, Notice):
            self._notice(effect, self.session.client_id)

    async def _commit(self, effect: ss.CommitFile) -> None:
        upload, self._upload = self._upload, None
        assert upload is not None
        location = await upload.commit()
        self.context.registry.save_file(
            FileRecord(
                effect.client_id, effect.storage_name, location, effect.size, effect.cksum, True
            )
        )

    async def _discard_upload(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            await upload.discard()

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
