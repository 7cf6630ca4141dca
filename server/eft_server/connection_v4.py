"""A version-4 connection: whole frames into ``ServerSessionV4``, its effects onto disk.

Every frame is a header (checked by ``payload_size`` before its payload is read) and a
payload of at most one 1 MiB chunk plus overhead, read into a pooled record buffer
(``frame_reader.FrameReader``, this version's buffer strategy) and opened in place, so a
connection holds at most one record in memory and never copies it. The loop is
``driver.ConnectionBase._serve``. Failures close the connection without an answer: the
session decides that, this module only carries it out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import socket
import time
from pathlib import Path
from typing import Any

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.deadlines import Deadline
from eft_protocol.notices import Notice, PackStored, QuietTransfer
from eft_protocol.registry import FileRecordV4
from eft_protocol.v4 import server as v4
from eft_protocol.v4.file_digest import algorithm_label
from eft_protocol.v4.pack import PACK
from eft_protocol.v4.records import COMMIT_IF

from . import client_tree, pack_store, proxy_header
from .driver import ConnectionBase, RegistrationLost, ServerContext
from .file_store import LocalUnfinishedUpload, LocalUnfinishedUploads, UnfinishedUpload
from .frame_reader import FrameReader, LentBuffer
from .partial_uploads import (
    SYNC_THREADS,
    PartialStore,
    PartialUpload,
    UploadBusy,
    commit_group,
    start_syncs,
)
from .storage import StorageError

#: Request codes a version-4 record is counted under: version 3's, STREAM's 903
#: (COMMIT_IF, not a ``RequestCode``; it was counted as "unknown" once per file) and
#: PACK's 904.
_KNOWN_CODES = frozenset({*RequestCode._value2member_map_, COMMIT_IF, PACK})
#: Records whose bytes count as file data received.
_DATA_CODES = (RequestCode.SEND_FILE, PACK)

#: After a storage error mid-upload, what the client may still send that is read and
#: dropped before the connection closes: what its socket buffers hold, and more.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_READ = 4096


class FolderInTheWay(StorageError):
    """A folder to make (DIRECTORY) is blocked by a file or a link: error 2, not 7."""


class ConnectionV4(ConnectionBase[v4.Effect]):
    version = 4
    #: The plaintext buffer of the input being applied (``FrameReader.lend_plaintext``):
    #: handed to its chunk's write (``_lend_until_written``), else given back after it.
    _lent: LentBuffer | None = None

    def __init__(
        self,
        context: ServerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first_header: bytes | None,
        accepted_at: float | None = None,
    ) -> None:
        super().__init__(context, reader, writer, accepted_at)
        assert context.static_key is not None
        self.session = v4.ServerSessionV4(
            context.static_key,
            context.registry,
            max_file_size=context.config.max_file_size_v4,
            gate=context.hello_gate,
            peer_address=address_key(proxy_header.peer_of(writer)),
            open_registration=context.open_registration,
            next_static=context.next_static_key,
            # Several files in flight commit as a group on the local disk; the S3 store
            # completes one multipart upload per file (docs/STORAGE-S3.md).
            stream=isinstance(context.partials, LocalUnfinishedUploads),
        )
        #: Read before the version was known; None: the front end (``front``) has taken
        #: every whole frame so far, the next bytes start a header.
        self.first_header = first_header
        self._header: bytes | None = None  # checked, its payload still to come
        self._upload: UnfinishedUpload | None = None
        #: Streamed files confirmed (903) and not yet stored: the next ``CommitGroup``'s.
        self._staged: list[tuple[LocalUnfinishedUpload, v4.StageUpload]] = []
        #: Their data syncs: started a batch at a time as they are staged (a group's
        #: share of the sync threads), the rest when the group commits.
        self._unsynced: list[PartialUpload] = []
        self._syncing: list[concurrent.futures.Future[None]] = []
        #: PACK: packed files written and waiting for the next ``CommitGroup`` (their
        #: syncs are in ``_syncing`` too).
        self._packed: list[pack_store.StagedFile] = []
        #: The names of the group being gathered (streamed and packed files alike).
        self._group_names = client_tree.GroupNames()
        self._frames: FrameReader | None = None
        self._request_counters: dict[int, Any] = {}
        #: Answers of the input being applied, written together when it is done.
        self._out: list[bytes] | None = None
        self._linger = False
        #: Streamed files verified, and their bytes: one ``files_streamed`` line at the
        #: end instead of one line a file (``QuietTransfer``).
        self._streamed = [0, 0]

    def _take_over(self) -> FrameReader:
        records = self.context.record_buffers
        assert records is not None
        first = self.first_header
        self._frames = FrameReader.take_over(self.reader, self.writer, records, first or b"")
        if first is None:
            self._frames.expect(REQUEST_HEADER.size)
        return self._frames

    def _take(self, now: float) -> list[v4.Effect] | None:
        frames = self._frames
        assert frames is not None
        if not frames.complete:
            return None
        if self._header is None:
            header = bytes(frames.view())
            try:
                size = self.session.payload_size(header)
            except errors.ProtocolError as exc:
                return self.session.abort(exc)
            self._header = header
            frames.expect(size)
            return None
        header, self._header = self._header, None
        payload = frames.view()
        self._count(header)
        self._lent = lent = frames.lend_plaintext()
        effects = self.session.receive(header, payload, now, lent.buffer if lent else None)
        del payload  # opened: the record buffer can serve another connection now
        frames.expect(REQUEST_HEADER.size)
        return effects

    def _deadline(self, now: float) -> Deadline:
        if self._header is not None:
            return self.deadlines.payload(now)
        return self.deadlines.between_frames(
            now,
            has_key=self.session.has_key,
            mid_upload=self.session.state is v4.ServerStateV4.UPLOADING,
        )

    async def _before_close(self) -> None:
        """After an error answer that the client may not read yet (it is still sending
        a file): say we are done writing, then read and drop what still arrives until
        the client closes, for at most LINGER_BYTES or one read timeout. Closing at once
        would reset the connection, and a reset can destroy the answer unread."""
        frames = self._frames
        if not self._linger or frames is None:
            return
        if self.writer.can_write_eof():
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write_eof()
        deadline = time.monotonic() + self.context.config.read_timeout
        dropped = 0
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while dropped < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                frames.expect(LINGER_READ)
                if not await frames.fill(left):
                    return
                dropped += LINGER_READ

    async def _apply(self, effects: list[v4.Effect]) -> None:
        """Carry out one input's effects, its answers written with one call at the end:
        a group's 64 answers (§8.1) cost one write, not 64 (issue 25)."""
        if self._out is not None:  # nested (an upload's readiness, a storage failure)
            await super()._apply(effects)
            return
        self._out = []
        try:
            await super()._apply(effects)
        finally:
            lent, self._lent = self._lent, None
            if lent is not None:  # no chunk was written from it (metadata, a drain, a failure)
                lent.give_back()
            out, self._out = self._out, None
            if out and not self.writer.is_closing():
                self.writer.writelines(out)

    def _send(self, frame: bytes, code: int) -> None:
        self.context.metrics.response(code, 4).inc()  # children cached server-wide
        if self._out is None:
            self.writer.write(frame)
        else:
            self._out.append(frame)

    def _count(self, header: bytes) -> None:
        code = int.from_bytes(header[17:19], "little")
        counter = self._request_counters.get(code)
        if counter is None:  # looked up once per code: a record per MiB makes this hot
            label = str(code) if code in _KNOWN_CODES else "unknown"
            counter = self._request_counters[code] = self.context.metrics.request(label, "4")
        counter.inc()
        if code in _DATA_CODES:
            self.context.metrics.received("4").inc(int.from_bytes(header[19:23], "little"))

    def _lend_until_written(self, upload: UnfinishedUpload) -> None:
        """The chunk just written came from this input's plaintext buffer: it goes back
        when the upload no longer needs it. A resumable upload on the local disk, and a
        large streamed file, write and hash it in a thread (``PartialUpload.write``):
        that thread's end gives it back, through the loop. Every other store has
        consumed it by now: back at once, before anything is awaited, so a server of
        small streamed files reuses one buffer."""
        lent, self._lent = self._lent, None
        if lent is None:
            return
        writing = upload.partial.writing if isinstance(upload, LocalUnfinishedUpload) else None
        if writing is None or writing.done():
            lent.give_back()
            return
        loop = asyncio.get_running_loop()

        def written(_: object) -> None:  # in the writer thread (or here, if just done)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(lent.give_back)

        writing.add_done_callback(written)

    async def _on_lost(self) -> None:
        if self._frames is not None:
            self._frames.release()
        await self._apply(self.session.connection_lost())
        await self._discard_staged()
        if self._streamed[0]:
            self.log.info("files_streamed", files=self._streamed[0], bytes=self._streamed[1])
        upload, self._upload = self._upload, None
        if upload is not None:  # closed by us mid-upload: keep it resumable
            await upload.suspend()

    # --- effects ----------------------------------------------------------------------

    def _local_partials(self) -> PartialStore:
        """The local store of unfinished uploads: several files in flight (STREAM) and
        empty folders are offered only on it (``stream_offered``)."""
        partials = self.context.partials
        assert isinstance(partials, LocalUnfinishedUploads)
        return partials.partials

    async def _storage_failed(self, error: StorageError) -> list[v4.Effect]:
        if isinstance(error, RegistrationLost):
            return self.session.registration_lost()
        if isinstance(error, FolderInTheWay):  # an empty folder of a tree: no close
            return self.session.folder_refused(str(error))
        if isinstance(error, UploadBusy):
            self.log.warning("upload_busy", error=str(error))
            return self.session.storage_failed("busy", busy=True)
        self._linger = True  # the client may still be sending: let it read why
        await self._discard_staged()
        upload, self._upload = self._upload, None
        if upload is not None:
            await upload.discard()
        return self.session.storage_failed(type(error).__name__, detail=error.detail)

    async def _discard_staged(self) -> None:
        """Staged files never answered: the client sends them again, whole."""
        staged, self._staged = self._staged, []
        packed, self._packed = self._packed, []
        self._group_names.clear()
        syncing, self._syncing, self._unsynced = self._syncing, [], []
        await _settled(syncing)
        for upload, _ in staged:
            await upload.discard()
        if packed:
            await asyncio.to_thread(pack_store.discard, packed)

    def _start_syncs(self) -> None:
        if self._unsynced:
            self._syncing.append(start_syncs(self._unsynced))
            self._unsynced = []

    async def _commit_group(self) -> None:
        self._start_syncs()
        staged, self._staged = self._staged, []
        packed, self._packed = self._packed, []
        self._group_names.clear()
        syncing, self._syncing = self._syncing, []
        if not staged and not packed:
            return
        client_id = self.session.client_id
        assert client_id is not None
        root = self._local_partials().client_root(client_id)
        uploads = [upload for upload, _ in staged]
        try:
            paths, packed_paths = await asyncio.to_thread(
                _commit_all, root, [u.partial for u in uploads], packed, syncing
            )
        except StorageError:
            await _settled(syncing)
            for upload in uploads:
                await upload.discard()
            await asyncio.to_thread(pack_store.discard, packed)
            raise
        records = [
            FileRecordV4(
                effect.client_id,
                effect.name,
                str(path),
                effect.size,
                effect.digest,
                algorithm_label(effect.digest_algorithm),
            )
            for path, (_, effect) in zip(paths, staged, strict=True)
        ]
        records += [
            FileRecordV4(
                client_id,
                file.name,
                str(path),
                file.size,
                file.digest,
                algorithm_label(file.digest_algorithm),
            )
            for path, file in zip(packed_paths, packed, strict=True)
        ]
        for record in records:
            self.context.registry.save_file_v4(record)

    def _taken_elsewhere(self) -> None:
        """Another replica asked for the upload this connection writes: its client is
        there now, and this connection's peer is gone (we had not noticed yet)."""
        self.log.info("upload_taken_elsewhere")
        self.writer.transport.abort()

    def _refuse(self, error: errors.ProtocolError) -> None:
        self.context.metrics.protocol_errors.labels(error.reason, "4").inc()
        self.log.warning("request_rejected", reason=error.reason, detail=str(error))
        self._closing = True

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
            await self._upload.write(effect.index, effect.data)
            self._lend_until_written(self._upload)
        elif isinstance(effect, v4.OpenUpload):
            if effect.stream:  # always fresh, dropped if the connection breaks
                # A file of one record on the local disk: open and measure it here, not
                # in a thread. Creating a file, statvfs and a few lstats of cached
                # folders take microseconds; two thread hops per file took longer than
                # the file itself and let nothing else run between them (issue 25).
                store = self._local_partials()
                partial = store.open(
                    effect.client_id,
                    effect.upload_id,
                    effect.name,
                    effect.size,
                    effect.digest_algorithm,
                    stream=True,
                )
                self._upload = LocalUnfinishedUpload(partial, store)
                room = store.room(self.context.config.keep_free, asking=partial)
                conflict = self._group_names.in_the_way(effect.name) or store.in_the_way(
                    effect.client_id, effect.name
                )
            else:
                self._upload = await partials.open(
                    effect.client_id,
                    effect.upload_id,
                    effect.name,
                    effect.size,
                    effect.digest_algorithm,
                )
                if hasattr(self._upload, "on_taken"):  # shared by replicas: may be asked back
                    self._upload.on_taken = self._taken_elsewhere
                room, conflict = await partials.measure(
                    self._upload, effect.client_id, effect.name, self.context.config.keep_free
                )
            ready = self.session.upload_ready(
                self._upload.durable_chunks, room=room, conflict=conflict
            )
            await self._apply(ready)
        elif isinstance(effect, v4.FinishUpload):
            assert self._upload is not None
            if effect.stream:  # synced with its group: only the hash now
                assert isinstance(self._upload, LocalUnfinishedUpload)
                digest = await self._upload.streamed_digest()
            else:
                digest = await self._upload.finish()
            await self._apply(self.session.upload_complete(digest, time.time()))
        elif isinstance(effect, v4.CommitUpload):
            upload, self._upload = self._upload, None
            assert upload is not None
            try:
                location = await upload.commit(effect.client_id, effect.name)
            except StorageError:
                await upload.discard()  # nothing left behind
                raise
            self.context.registry.save_file_v4(
                FileRecordV4(
                    effect.client_id,
                    effect.name,
                    location,
                    effect.size,
                    effect.digest,
                    algorithm_label(effect.digest_algorithm),
                )
            )
        elif isinstance(effect, v4.StageUpload):
            staged, self._upload = self._upload, None
            assert isinstance(staged, LocalUnfinishedUpload)
            self._staged.append((staged, effect))
            self._group_names.add(effect.name)
            self._unsynced.append(staged.partial)
            if len(self._unsynced) >= max(1, self.session.group_files // SYNC_THREADS):
                self._start_syncs()
        elif isinstance(effect, v4.StorePack):
            packed, refused = pack_store.stage_pack(
                self._local_partials(),
                effect.client_id,
                effect.files,
                effect.digest_algorithm,
                self.context.config.keep_free,
                group=self._group_names,
            )
            self._packed += packed
            share = max(1, self.session.group_files // SYNC_THREADS)
            for start in range(0, len(packed), share):  # the sync threads' share each
                self._syncing.append(pack_store.start_syncs(packed[start : start + share]))
            await self._apply(self.session.pack_stored(refused, time.time()))
        elif isinstance(effect, v4.MakeFolder):
            root = self._local_partials().client_root(effect.client_id)
            try:
                await asyncio.to_thread(client_tree.make_folder, root, effect.name)
            except client_tree.NameInTheWay as exc:
                raise FolderInTheWay(str(exc)) from exc
        elif isinstance(effect, v4.CommitGroup):
            await self._commit_group()
        elif isinstance(effect, v4.DiscardUpload):
            upload, self._upload = self._upload, None
            if upload is not None:
                await upload.discard()
        elif isinstance(effect, v4.SuspendUpload):
            upload, self._upload = self._upload, None
            if upload is not None:
                await upload.suspend()
        elif isinstance(effect, Notice):
            if isinstance(effect, QuietTransfer) and effect.outcome == "verified":
                self._streamed[0] += 1
                self._streamed[1] += effect.fields["bytes"]
            elif isinstance(effect, PackStored):
                self._streamed[0] += effect.fields["files"]
                self._streamed[1] += effect.fields["bytes"]
            self._notice(effect, self.session.client_id)
            if self._bound_client is not None and self._frames is not None:
                self._frames.owner = self._bound_client  # its share of the record buffers


def _commit_all(
    root: Path,
    uploads: list[PartialUpload],
    packed: list[pack_store.StagedFile],
    syncing: list[concurrent.futures.Future[None]],
) -> tuple[list[Path], list[Path]]:
    """A group's streamed files, then its packed files, stored (in a thread): the
    paths of each. Every sync started is waited for first, whatever its kind."""
    paths = commit_group(root, uploads, syncing) if uploads else []
    return paths, pack_store.commit(root, packed, [] if uploads else syncing)


async def _settled(syncing: list[concurrent.futures.Future[None]]) -> None:
    """Wait until every data sync started has ended, whatever its outcome: a file is
    not closed or removed under a sync still running on it."""
    for future in syncing:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(future)


def address_key(peer: object) -> bytes:
    """The source address as the cookies and the per-address DH rate key it (b"":
    unknown): IPv4 as is (also when mapped into IPv6), IPv6 by its /64, which one host
    usually holds whole."""
    if not isinstance(peer, tuple):
        return b""
    try:  # the common case first: a dotted IPv4 address, parsed in C (issue 18)
        return socket.inet_pton(socket.AF_INET, peer[0])
    except (OSError, TypeError):
        pass
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return b""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        return address.packed[:8]
    return address.packed
