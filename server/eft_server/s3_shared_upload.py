"""One shared unfinished upload being written (s3_shared_uploads.py): each whole part
put as an object, copied into the multipart upload and recorded, under the fencing of
its generation; the tail put and recorded when the connection breaks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from eft_protocol.v4.file_digest import FileHasher
from eft_protocol.v4.records import CHUNK

from .s3_shared_sweep import abort, delete_staging
from .s3_store import PartBuffer
from .storage import StorageError

if TYPE_CHECKING:
    from .s3_shared_uploads import SharedUnfinishedUploads


class UploadTaken(StorageError):
    """Another replica took this upload over: this one must not write it any more."""


class SharedUpload:
    def __init__(
        self,
        store: SharedUnfinishedUploads,
        key: int,
        client_id: bytes,
        upload_id: bytes,
        *,
        object_key: str,
        s3_upload_id: str,
        part_size: int,
        size: int,
        generation: int,
        hasher: FileHasher,
        parts: list[dict[str, Any]],
        durable_chunks: int,
        buffer: PartBuffer | None = None,
        read_back: int = 0,
    ) -> None:
        self._store = store
        #: Bytes read back from S3 when it was opened (a resume's cost, for tests).
        self.read_back = read_back
        self._key = key
        self._ids = (client_id, upload_id)
        self.object_key = object_key
        self.s3_upload_id = s3_upload_id
        self.part_size = part_size
        self.size = size
        self.generation = generation
        self._hasher = hasher
        #: Bytes the hasher has seen: the kept prefix, then every write.
        self._hashed = durable_chunks * CHUNK
        self._parts = parts
        self.durable_chunks = durable_chunks
        self.written_chunks = durable_chunks
        self.buffer: PartBuffer | None = buffer or PartBuffer(part_size)
        self.fenced = False
        #: Set by the connection writing it: cuts that connection (another replica
        #: asked for the upload: its client is there now).
        self.on_taken: Callable[[], None] | None = None

    @property
    def received(self) -> int:
        return len(self._parts) * self.part_size + (self.buffer.filled if self.buffer else 0)

    def cut(self) -> None:
        if self.on_taken is not None:
            self.on_taken()

    def _staging_key(self, what: str) -> str:
        return self._store._staging_prefix(*self._ids) + f"g{self.generation}-{what}"

    def _check(self) -> None:
        if self.fenced:
            raise UploadTaken("another replica took this upload over")

    async def write(self, index: int, data: bytes | memoryview) -> None:
        assert index == self.written_chunks + 1 and self.buffer is not None
        self._check()
        view = memoryview(data)
        buffer = self.buffer
        self._hasher.update(data)  # first: the bytes are in the buffer whatever S3 says
        self._hashed += len(data)
        while view:
            view = view[buffer.take(view) :]
            if buffer.full:
                await self._send_part(buffer)
                buffer.reset()
        self.written_chunks = index

    async def _send_part(self, buffer: PartBuffer) -> None:
        """A whole part: its own object, copied into the multipart upload, recorded."""
        client = self._store.client
        number = len(self._parts) + 1
        source = self._staging_key(f"p{number}")
        await client.call("put_object", Key=source, Body=buffer.body())
        copied = await client.call(
            "upload_part_copy",
            Key=self.object_key,
            UploadId=self.s3_upload_id,
            PartNumber=number,
            CopySource={"Bucket": client.bucket, "Key": source},
        )
        etag = copied["CopyPartResult"]["ETag"]
        await self._record(
            number * self.part_size,
            None,
            0,
            part=(number, source, etag),
        )
        self._parts.append({"PartNumber": number, "ETag": etag, "source": source})
        self._store.log.info("s3_part_recorded", part=number, offset=number * self.part_size)

    async def _record(
        self,
        offset: int,
        tail_key: str | None,
        tail_size: int,
        part: tuple[int, str, str] | None = None,
    ) -> None:
        """Move the acknowledged offset, only if this replica still holds the upload."""
        pool = self._store._pool
        assert pool is not None
        client_id, upload_id = self._ids
        try:
            async with pool.acquire() as connection, connection.transaction():
                moved = await connection.execute(
                    "UPDATE uploads_v4 SET durable_offset = $3, tail_key = $4, tail_size = $5,"
                    " updated_at = $6 WHERE client_id = $1 AND upload_id = $2"
                    " AND generation = $7",
                    client_id,
                    upload_id,
                    offset,
                    tail_key,
                    tail_size,
                    time.time(),
                    self.generation,
                )
                if moved != "UPDATE 1":
                    self.fenced = True
                    raise UploadTaken("another replica took this upload over")
                if part is not None:
                    number, source, etag = part
                    await connection.execute(
                        "INSERT INTO upload_parts_v4 (client_id, upload_id, part_number, size,"
                        " etag, source_key) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (client_id, upload_id, part_number) DO UPDATE"
                        " SET size = $4, etag = $5, source_key = $6",
                        client_id,
                        upload_id,
                        number,
                        self.part_size,
                        etag,
                        source,
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"the upload record could not be written: {exc}") from exc

    async def _still_ours(self) -> None:
        pool = self._store._pool
        assert pool is not None
        try:
            generation = await pool.fetchval(
                "SELECT generation FROM uploads_v4 WHERE client_id = $1 AND upload_id = $2",
                *self._ids,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"the upload record could not be read: {exc}") from exc
        if generation != self.generation:
            self.fenced = True
            raise UploadTaken("another replica took this upload over")

    async def finish(self) -> bytes:
        return self._hasher.digest()

    async def commit(self, client_id: bytes, name: str) -> str:
        self._check()
        client = self._store.client
        buffer = self.buffer
        assert buffer is not None
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts]
        if buffer.filled or not parts:
            number = len(parts) + 1
            answer = await client.call(
                "upload_part",
                Key=self.object_key,
                UploadId=self.s3_upload_id,
                PartNumber=number,
                Body=buffer.body(),
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        # Still ours? (A taker aborted this multipart upload; a completed one would be
        # the client's whole verified file anyway.)
        await self._record(self.received, None, 0)
        await client.call(
            "complete_multipart_upload",
            Key=self.object_key,
            UploadId=self.s3_upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._release_buffer()
        await self._forget()
        return client.location.url(self.object_key)

    async def _forget(self) -> None:
        store = self._store
        await delete_staging(store, store._staging_prefix(*self._ids))
        assert store._pool is not None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await store._pool.execute(
                "DELETE FROM uploads_v4 WHERE client_id = $1 AND upload_id = $2"
                " AND generation = $3",
                *self._ids,
                self.generation,
            )
        await store._unlock(self._key)

    def _release_buffer(self) -> None:
        if self.buffer is not None:
            self.buffer.release()
            self.buffer = None

    async def suspend(self) -> None:
        """The connection broke: the tail into S3, the offset recorded, the lock freed."""
        buffer = self.buffer
        if buffer is None:
            return
        try:
            if not self.fenced:
                if buffer.filled:
                    await self._still_ours()  # a stale holder puts no tail nobody deletes
                    tail_key = self._staging_key(f"tail{len(self._parts)}")
                    await self._store.client.call("put_object", Key=tail_key, Body=buffer.body())
                    sent = len(self._parts) * self.part_size
                    await self._record(sent + buffer.filled, tail_key, buffer.filled)
                # All recorded: a resume here needs no reading back of the prefix.
                if self._hashed == self.received:
                    self._store.keep_hasher(self._key, self.generation, self.received, self._hasher)
        except StorageError as exc:  # the parts recorded still count
            self._store.log.warning("s3_tail_not_kept", error=str(exc))
        finally:
            self._release_buffer()
            if not self.fenced:
                await self._store._unlock(self._key)
        if not self.fenced:  # idle now: counts for the limits (itself spared this turn)
            await self._store.enforce_quota(*self._ids)

    async def discard(self) -> None:
        self._release_buffer()
        if self.fenced:
            return
        store = self._store
        if await abort(store, self.object_key, self.s3_upload_id):
            await self._forget()
            return
        # S3 kept the multipart upload: its record (the only note of its id) stays, but
        # with nothing to resume from and idle since ever, for the next sweep to retry.
        try:
            assert store._pool is not None
            async with store._pool.acquire() as connection, connection.transaction():
                reset = await connection.execute(
                    "UPDATE uploads_v4 SET durable_offset = 0, tail_key = NULL, tail_size = 0,"
                    " updated_at = 0 WHERE client_id = $1 AND upload_id = $2"
                    " AND generation = $3",
                    *self._ids,
                    self.generation,
                )
                if reset == "UPDATE 1":  # still ours (a taker aborted it otherwise)
                    await connection.execute(
                        "DELETE FROM upload_parts_v4 WHERE client_id = $1 AND upload_id = $2",
                        *self._ids,
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            store.log.warning("s3_upload_not_reset", error=str(exc))
        await store._unlock(self._key)
