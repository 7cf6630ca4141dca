"""One client connection: read bytes, feed the parser, carry out the session's effects.

All protocol decisions are in ``eft_protocol.server_session``; this module only moves
bytes, touches the disk, counts and logs. Where to look for a request's handling: the
session's ``_register`` (825), ``_public_key`` (826), ``_reconnect`` (827),
``_packet_started``/``_packet_content``/``_packet_finished`` (828) and ``_crc_ok``,
``_crc_retry``, ``_crc_give_up`` (900-902).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import structlog
from eft_protocol import errors
from eft_protocol import server_session as ss
from eft_protocol.codes import RequestCode
from eft_protocol.parser import (
    NEED_DATA,
    PacketContent,
    PacketStarted,
    RequestEvent,
    RequestParser,
    RequestReceived,
    RequestRejected,
)
from eft_protocol.registry import FileRecord, MemoryRegistry
from eft_protocol.wire import ServerError

from .metrics import ServerMetrics
from .storage import FileStore, StorageError, TempUpload

READ_SIZE = 256 * 1024
_connection_ids = itertools.count(1)


@dataclass
class ServerContext:
    """What every connection shares."""

    registry: MemoryRegistry
    store: FileStore
    metrics: ServerMetrics
    answer_crc_retry: bool
    idle_timeout: float


class Connection:
    def __init__(
        self, context: ServerContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.parser = RequestParser()
        self.session = ss.ServerSession(context.registry, answer_crc_retry=context.answer_crc_retry)
        self.id = next(_connection_ids)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._upload: TempUpload | None = None
        self._closing = False
        self.log: Any = structlog.get_logger("eft.connection")

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(connection=self.id, peer=self.peer)
        metrics = self.context.metrics
        metrics.connections.inc()
        metrics.connections_active.inc()
        self.log.info("connection_opened")
        try:
            await self._serve()
        except errors.FramingError as exc:
            self._reject(exc, None)
        except TimeoutError:
            self.log.info("connection_idle", timeout=self.context.idle_timeout)
        except (ConnectionError, OSError) as exc:
            self.log.info("connection_lost", error=str(exc))
        finally:
            await self._apply(self.session.connection_lost())
            await self._close()
            metrics.connections_active.dec()
            self.log.info("connection_closed")

    async def _serve(self) -> None:
        while not self._closing:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.context.idle_timeout)
            if not data:
                self.parser.receive_eof()
                return
            self.parser.receive_data(data)
            while not self._closing and (event := self.parser.next_event()) is not NEED_DATA:
                self._count_request(event)
                await self._apply(self.session.handle(event, time.monotonic()))
            await self.writer.drain()

    def _count_request(self, event: RequestEvent) -> None:
        if isinstance(event, RequestReceived):
            code = int(event.request.code)
        elif isinstance(event, PacketStarted):
            code = int(RequestCode.SEND_FILE)
            self.log.debug(
                "packet", number=event.packet.packet_number, total=event.packet.total_packets
            )
        elif isinstance(event, RequestRejected):
            code = event.header.code
        else:
            if isinstance(event, PacketContent):
                self.context.metrics.received_ciphertext.inc(len(event.data))
            return
        label = str(code) if code in RequestCode._value2member_map_ else "unknown"
        self.context.metrics.requests.labels(label).inc()
        if isinstance(event, RequestReceived):
            self.log.info("request", code=code)

    async def _apply(self, effects: list[ss.Effect]) -> None:
        for effect in effects:
            try:
                await self._apply_one(effect)
            except StorageError as exc:
                self.log.error("storage_failed", error=str(exc))
                self._upload = None
                # The rest of the list assumed the storage step worked: replace it.
                await self._apply(self.session.storage_failed(type(exc).__name__))
                return

    async def _apply_one(self, effect: ss.Effect) -> None:
        if isinstance(effect, ss.Send):
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
        elif isinstance(effect, ss.Notice):
            self._notice(effect)

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

    def _send(self, frame: bytes, code: int) -> None:
        self.writer.write(frame)
        self.context.metrics.responses.labels(str(code)).inc()

    def _reject(self, error: errors.ProtocolError, request_code: int | None) -> None:
        self.context.metrics.protocol_errors.labels(error.reason).inc()
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

    def _notice(self, notice: ss.Notice) -> None:
        metrics = self.context.metrics
        fields = notice.fields
        if notice.event == "registered":
            structlog.contextvars.bind_contextvars(client_id=fields["client_id"])
            metrics.registrations.labels("registered").inc()
            metrics.registered_clients.set(len(self.context.registry.clients()))
        elif notice.event == "registration_refused":
            metrics.registrations.labels("refused").inc()
        elif notice.event == "reconnected":
            metrics.reconnects.labels("approved").inc()
        elif notice.event == "reconnect_denied":
            metrics.reconnects.labels("denied").inc()
        elif notice.event == "transfer":
            metrics.transfer(fields)
        if notice.event in ("reconnected", "key_exchanged") and self.session.client_id:
            structlog.contextvars.bind_contextvars(client_id=self.session.client_id.hex())
        self.log.info(notice.event, **fields)

    async def _close(self) -> None:
        self._discard_upload()
        if self.writer.is_closing():
            return
        try:
            await self.writer.drain()
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # the peer is already gone; nothing left to tell it
