"""One version-4 connection: whole frames in, effects of ``ServerSessionV4`` out.

Every frame is a header (checked before its payload is read) and a payload of at most
one 1 MiB chunk plus overhead, so a connection holds at most one record in memory.
Failures close the connection without an answer: the session decides that, this module
only carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.deadlines import Deadline
from eft_protocol.notices import Notice
from eft_protocol.registry import FileRecordV4
from eft_protocol.v4 import server as v4

from .driver import ConnectionBase, ReadTimeout, ServerContext
from .frame_reader import FrameReader
from .partial_uploads import PartialUpload, UploadBusy
from .storage import StorageError

#: After a storage error mid-upload, what the client may still send that is read and
#: dropped before the connection closes: what its socket buffers hold, and more.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_READ = 4096


class ConnectionV4(ConnectionBase):
    version = 4

    def __init__(
        self,
        context: ServerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first_header: bytes,
        accepted_at: float | None = None,
    ) -> None:
        super().__init__(context, reader, writer, accepted_at)
        assert context.static_key is not None
        self.session = v4.ServerSessionV4(
            context.static_key, context.registry, max_file_size=context.config.max_file_size_v4
        )
        self._header = first_header
        self._upload: PartialUpload | None = None
        self._frames: FrameReader | None = None
        self._request_counters: dict[int, Any] = {}
        self._linger = False

    async def _serve(self) -> None:
        assert self.context.record_buffers is not None
        frames = FrameReader.take_over(self.reader, self.writer, self.context.record_buffers)
        self._frames = frames

        async def read(size: int, deadline: Deadline) -> bytes | memoryview:
            kind, seconds = deadline.kind, deadline.seconds
            if frames is None:
                return await self._read(self.reader.readexactly(size), kind, seconds)
            try:
                return await frames.read(size, seconds)
            except TimeoutError:
                raise ReadTimeout(kind, seconds) from None

        header = self._header
        while not self._closing:
            try:
                size = self.session.payload_size(header)
            except errors.ProtocolError as exc:
                await self._apply(self.session.abort(exc))
                return
            payload = await read(size, self.deadlines.payload(time.monotonic()))
            self._count(header)
            effects = self.session.receive(header, payload, time.time())
            del payload  # opened: the record buffer can serve another connection now
            if frames is not None:
                frames.release()
            await self._apply(effects)
            await self.writer.drain()
            if self._closing:
                if self._linger:
                    await self._drain_rest(read)
                return
            deadline = self.deadlines.between_frames(
                time.monotonic(),
                has_key=self.session.has_key,
                mid_upload=self.session.state is v4.ServerStateV4.UPLOADING,
            )
            header = bytes(await read(REQUEST_HEADER.size, deadline))

    async def _drain_rest(self, read: Callable[[int, Deadline], Awaitable[object]]) -> None:
        """After an error answer that the client may not read yet (it is still sending
        a file): say we are done writing, then read and drop what still arrives until
        the client closes, for at most LINGER_BYTES or one read timeout. Closing at once
        would reset the connection, and a reset can destroy the answer unread."""
        if self.writer.can_write_eof():
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write_eof()
        deadline = time.monotonic() + self.context.config.read_timeout
        dropped = 0
        with contextlib.suppress(
            ReadTimeout, asyncio.IncompleteReadError, ConnectionError, OSError
        ):
            while dropped < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                await read(LINGER_READ, Deadline("read", deadline, left))
                dropped += LINGER_READ

    def _count(self, header: bytes) -> None:
        code = int.from_bytes(header[17:19], "little")
        counter = self._request_counters.get(code)
        if counter is None:  # looked up once per code: a record per MiB makes this hot
            label = str(code) if code in RequestCode._value2member_map_ else "unknown"
            counter = self._request_counters[code] = self.context.metrics.requests.labels(
                label, "4"
            )
        counter.inc()
        if code == RequestCode.SEND_FILE:
            self.context.metrics.received_ciphertext.labels("4").inc(
                int.from_bytes(header[19:23], "little")
            )

    async def _on_lost(self) -> None:
        if self._frames is not None:
            self._frames.release()
        await self._apply(self.session.connection_lost())
        if self._upload is not None:  # closed by us mid-upload: keep it resumable
            await asyncio.to_thread(self._upload.suspend)
            self._upload = None

    # --- effects ----------------------------------------------------------------------

    async def _apply(self, effects: list[v4.Effect]) -> None:
        # Taken off the list as they are carried out: a written chunk's plaintext (1 MiB)
        # is freed before the next effect is awaited (a commit may wait on a thread).
        effects.reverse()
        while effects:
            effect = effects.pop()
            try:
                await self._apply_one(effect)
            except UploadBusy as exc:
                self.log.warning("upload_busy", error=str(exc))
                await self._apply(self.session.storage_failed("busy", busy=True))
                return
            except StorageError as exc:  # logged once, by the session's notice
                self._linger = True  # the client may still be sending: let it read why
                if self._upload is not None:
                    await asyncio.to_thread(self._upload.discard)
                    self._upload = None
                failed = self.session.storage_failed(type(exc).__name__, detail=exc.detail)
                await self._apply(failed)
                return
            except errors.ProtocolError as exc:  # a limit of this server
                self.context.metrics.protocol_errors.labels(exc.reason, "4").inc()
                self.log.warning("request_rejected", reason=exc.reason, detail=str(exc))
                self._closing = True
                return

    async def _apply_one(self, effect: v4.Effect) -> None:
        partials = self.context.partials
        assert partials is not None
        if isinstance(effect, v4.SendFrame):
            await self._durable()
            self._send(effect.frame, effect.code)
        elif isinstance(effect, v4.Close):
            self._closing = True
        elif isinstance(effect, v4.WriteChunk):
            assert self._upload is not None
            self._upload.write(effect.index, effect.data)
        elif isinstance(effect, v4.OpenUpload):
            self._upload = await asyncio.to_thread(
                partials.open, effect.client_id, effect.upload_id, effect.name, effect.size
            )
            await self._apply(self.session.upload_ready(self._upload.durable_chunks))
        elif isinstance(effect, v4.FinishUpload):
            assert self._upload is not None
            digest = await asyncio.to_thread(self._upload.finish)
            await self._apply(self.session.upload_complete(digest, time.time()))
        elif isinstance(effect, v4.CommitUpload):
            upload, self._upload = self._upload, None
            assert upload is not None
            final = partials.final_path(effect.client_id, effect.name)
            try:
                path = await asyncio.to_thread(upload.commit, final)
            except StorageError:
                await asyncio.to_thread(upload.discard)  # nothing left behind
                raise
            self.context.registry.save_file_v4(
                FileRecordV4(effect.client_id, effect.name, str(path), effect.size, effect.digest)
            )
        elif isinstance(effect, v4.DiscardUpload):
            if self._upload is not None:
                await asyncio.to_thread(self._upload.discard)
                self._upload = None
        elif isinstance(effect, v4.SuspendUpload):
            if self._upload is not None:
                await asyncio.to_thread(self._upload.suspend)
                self._upload = None
        elif isinstance(effect, Notice):
            self._notice(effect, self.session.client_id)
