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
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog
from eft_protocol import errors
from eft_protocol import server_session as ss
from eft_protocol.codes import RequestCode
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

from .config import ServerConfig
from .metrics import ServerMetrics
from .registry import EphemeralRegistry
from .storage import FileStore, StorageError, TempUpload

READ_SIZE = 256 * 1024
_connection_ids = itertools.count(1)


class _Timeout(Exception):
    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(kind)
        self.kind, self.seconds = kind, round(seconds, 3)


@dataclass
class ServerContext:
    """What every connection shares."""

    config: ServerConfig
    registry: EphemeralRegistry
    store: FileStore
    metrics: ServerMetrics
    #: Open connections per client id, for ``max_sessions_per_client``.
    sessions: Counter[bytes] = field(default_factory=Counter)


class Connection:
    def __init__(
        self, context: ServerContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        config = context.config
        self.parser = RequestParser(ParserLimits(max_packet_payload=config.max_packet_payload))
        self.session = ss.ServerSession(
            context.registry,
            limits=ss.ServerLimits(max_file_size=config.max_file_size),
            answer_crc_retry=config.answer_crc_retry,
        )
        self._bound_client: bytes | None = None
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
        except _Timeout as timeout:
            metrics.timeouts.labels(timeout.kind).inc()
            self.log.info("connection_timeout", kind=timeout.kind, seconds=timeout.seconds)
        except (ConnectionError, OSError) as exc:
            self.log.info("connection_lost", error=str(exc))
        finally:
            await self._apply(self.session.connection_lost())
            await self._close()
            if self._bound_client is not None:
                self.context.sessions[self._bound_client] -= 1
            metrics.connections_active.dec()
            self.log.info("connection_closed")

    def _next_timeout(self, handshake_deadline: float) -> tuple[str, float]:
        """How long the next read may take, and which limit that is."""
        config = self.context.config
        kind, seconds = "idle", config.idle_timeout
        if self.parser.in_frame:
            kind, seconds = "read", config.read_timeout
        if not self.session.has_key:
            left = handshake_deadline - time.monotonic()
            if left < seconds:
                kind, seconds = "handshake", left
        return kind, seconds

    async def _serve(self) -> None:
        handshake_deadline = time.monotonic() + self.context.config.handshake_timeout
        while not self._closing:
            kind, seconds = self._next_timeout(handshake_deadline)
            try:
                if seconds <= 0:
                    raise TimeoutError
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), seconds)
            except TimeoutError:
                raise _Timeout(kind, seconds) from None
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

    async def _durable(self) -> None:
        """Wait until registry changes are on disk: a response may report them."""
        pending = self.context.registry.flush()
        if pending is not None:
            try:
                await asyncio.wrap_future(pending)
            except sqlite3.Error as exc:
                raise StorageError(f"the registry could not be written: {exc}") from exc

    def _bind(self, client_id: bytes) -> None:
        """Count this connection against its client's session limit."""
        if self._bound_client == client_id:
            return
        if self._bound_client is not None:
            self.context.sessions[self._bound_client] -= 1
        structlog.contextvars.bind_contextvars(client_id=client_id.hex())
        self._bound_client = client_id
        self.context.sessions[client_id] += 1
        limit = self.context.config.max_sessions_per_client
        if self.context.sessions[client_id] > limit:
            raise errors.TooManySessions(f"client already has {limit} connections open")

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
        self.log.info(notice.event, **fields)
        if notice.event in ("registered", "reconnected", "key_exchanged"):
            assert self.session.client_id is not None
            self._bind(self.session.client_id)

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
