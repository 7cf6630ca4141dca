"""Opening a shared unfinished upload (s3_shared_uploads.py): resumed from its records
in PostgreSQL and its parts in S3, or started afresh; the digest rebuilt by reading the
kept prefix back when this replica does not keep the hasher."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eft_protocol.v4.file_digest import FileHasher, hasher_for
from eft_protocol.v4.records import CHUNK, chunk_count

from .s3_shared_sweep import abort, remove_record
from .s3_shared_upload import SharedUpload
from .s3_store import PartBuffer, S3Client, S3Failed, part_size_for
from .storage import StorageError

if TYPE_CHECKING:
    from .s3_shared_uploads import SharedUnfinishedUploads

#: Bytes read back at a time when rebuilding a resumed upload's digest.
READ_PIECE = 1 << 20


async def resume_or_start(
    store: SharedUnfinishedUploads,
    key: int,
    client_id: bytes,
    upload_id: bytes,
    *,
    name: str,
    size: int,
    digest_algorithm: int,
) -> SharedUpload:
    pool = store._pool
    assert pool is not None
    row = await pool.fetchrow(
        "SELECT file_name, size, object_key, store_upload_id, durable_offset, generation,"
        " part_size, digest_algorithm, tail_key, tail_size FROM uploads_v4"
        " WHERE client_id = $1 AND upload_id = $2",
        client_id,
        upload_id,
    )
    if row is not None:
        if (row["file_name"], row["size"], row["digest_algorithm"]) == (
            name,
            size,
            digest_algorithm,
        ) and row["object_key"]:
            resumed = await _resume(store, key, client_id, upload_id, row)
            if resumed is not None:
                return resumed
        if not await remove_record(store, client_id, upload_id):
            # Its record is the only note of what S3 still holds: kept, and no new
            # upload under the same ids until it can go (the client tries again).
            raise StorageError("the upload's earlier parts could not be removed from S3")
    object_key = store.prefix + f"{client_id.hex()}/{name}"
    started = await store.client.call("create_multipart_upload", Key=object_key)
    part_size = part_size_for(size)
    await pool.execute(
        "INSERT INTO uploads_v4 (client_id, upload_id, file_name, size, store_upload_id,"
        " durable_offset, updated_at, object_key, part_size, digest_algorithm, generation)"
        " VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, 1)",
        client_id,
        upload_id,
        name,
        size,
        started["UploadId"],
        time.time(),
        object_key,
        part_size,
        digest_algorithm,
    )
    store.log.info("s3_upload_started", s3_upload_id=started["UploadId"], shared=True)
    await store.enforce_quota(client_id, upload_id)
    return SharedUpload(
        store,
        key,
        client_id,
        upload_id,
        object_key=object_key,
        s3_upload_id=started["UploadId"],
        part_size=part_size,
        size=size,
        generation=1,
        hasher=hasher_for(digest_algorithm),
        parts=[],
        durable_chunks=0,
    )


async def _resume(
    store: SharedUnfinishedUploads,
    key: int,
    client_id: bytes,
    upload_id: bytes,
    row: Any,
) -> SharedUpload | None:
    """Take the upload over: a new generation, a new multipart upload with the kept
    parts copied in server-side, the digest rebuilt by reading the kept bytes back."""
    pool = store._pool
    assert pool is not None
    size, part_size = int(row["size"]), int(row["part_size"])
    sources = await pool.fetch(
        "SELECT part_number, size, source_key FROM upload_parts_v4"
        " WHERE client_id = $1 AND upload_id = $2 ORDER BY part_number",
        client_id,
        upload_id,
    )
    offset = int(row["durable_offset"])
    if [r["part_number"] for r in sources] != list(range(1, len(sources) + 1)) or any(
        r["size"] != part_size or not r["source_key"] for r in sources
    ):
        store.log.warning("s3_resume_impossible", error="parts differ from the record")
        return None
    pieces = [(r["source_key"], part_size) for r in sources]
    if row["tail_key"] and row["tail_size"]:
        pieces.append((row["tail_key"], int(row["tail_size"])))
    if offset != sum(length for _, length in pieces):
        store.log.warning("s3_resume_impossible", error="offset differs from the parts")
        return None
    # Whole chunks only, and never the last (only it completes a file).
    durable_chunks = min(offset // CHUNK, chunk_count(size) - 1)
    resume_at = durable_chunks * CHUNK
    kept_parts = resume_at // part_size
    generation = int(row["generation"]) + 1
    taken = await pool.execute(
        "UPDATE uploads_v4 SET generation = $3, updated_at = $4"
        " WHERE client_id = $1 AND upload_id = $2 AND generation = $5",
        client_id,
        upload_id,
        generation,
        time.time(),
        row["generation"],
    )
    if taken != "UPDATE 1":
        return None
    # The previous holder's multipart upload is aborted: if it wakes up, its parts
    # land nowhere that will be completed (fencing, with the generation).
    # Not aborted: the record keeps its id (the next taker, sweep or quota turn tries
    # again), and this open fails as S3 does.
    if not await abort(store, row["object_key"], row["store_upload_id"]):
        raise StorageError("the upload's earlier multipart upload could not be aborted")
    started = await store.client.call("create_multipart_upload", Key=row["object_key"])
    s3_upload_id = started["UploadId"]
    # Named in the record at once: an abort below that fails leaves it to those retries.
    await pool.execute(
        "UPDATE uploads_v4 SET store_upload_id = $3 WHERE client_id = $1 AND upload_id = $2"
        " AND generation = $4",
        client_id,
        upload_id,
        s3_upload_id,
        generation,
    )
    parts: list[dict[str, Any]] = []
    buffer = PartBuffer(part_size)
    # Suspended here, and nobody wrote it since: the digest state is still in memory,
    # and only the tail needs reading (into the buffer). Otherwise the whole prefix.
    kept = store._hashers.pop(key, None)
    reuse = kept is not None and kept[:2] == (int(row["generation"]), resume_at)
    hasher = kept[2] if kept is not None and reuse else hasher_for(int(row["digest_algorithm"]))
    read_back = 0
    try:
        for number, (source, _length) in enumerate(pieces[:kept_parts], start=1):
            copied = await store.client.call(
                "upload_part_copy",
                Key=row["object_key"],
                UploadId=s3_upload_id,
                PartNumber=number,
                CopySource={"Bucket": store.client.bucket, "Key": source},
            )
            parts.append(
                {"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"], "source": source}
            )
        position = 0
        for source, length in pieces:
            if position >= resume_at:
                break
            wanted = min(length, resume_at - position)
            keep = position >= kept_parts * part_size
            if keep or not reuse:
                await _read_back(
                    store.client, source, wanted, None if reuse else hasher, buffer, keep=keep
                )
                read_back += wanted
            position += wanted
    except BaseException:
        buffer.release()
        await abort(store, row["object_key"], s3_upload_id)
        raise
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE uploads_v4 SET store_upload_id = $3, durable_offset = $4, tail_key = NULL,"
            " tail_size = 0 WHERE client_id = $1 AND upload_id = $2",
            client_id,
            upload_id,
            s3_upload_id,
            kept_parts * part_size,
        )
        await connection.execute(
            "DELETE FROM upload_parts_v4 WHERE client_id = $1 AND upload_id = $2"
            " AND part_number > $3",
            client_id,
            upload_id,
            kept_parts,
        )
        for part in parts:
            await connection.execute(
                "UPDATE upload_parts_v4 SET etag = $4"
                " WHERE client_id = $1 AND upload_id = $2 AND part_number = $3",
                client_id,
                upload_id,
                part["PartNumber"],
                part["ETag"],
            )
    store.log.info(
        "s3_upload_resumed",
        s3_upload_id=s3_upload_id,
        parts=kept_parts,
        tail_bytes=buffer.filled,
        offset=resume_at,
        read_back=read_back,
        generation=generation,
        shared=True,
    )
    return SharedUpload(
        store,
        key,
        client_id,
        upload_id,
        object_key=row["object_key"],
        s3_upload_id=s3_upload_id,
        part_size=part_size,
        size=size,
        generation=generation,
        hasher=hasher,
        parts=parts,
        durable_chunks=durable_chunks,
        buffer=buffer,
        read_back=read_back,
    )


async def _read_back(
    client: S3Client,
    source: str,
    length: int,
    hasher: FileHasher | None,
    buffer: PartBuffer,
    *,
    keep: bool,
) -> None:
    """The first ``length`` bytes of ``source`` into the hasher (and into the part
    buffer, for the bytes after the last part kept), a piece at a time."""
    answer = await client.call("get_object", Key=source, Range=f"bytes=0-{length - 1}")
    body = answer["Body"]
    try:
        left = length
        while left:
            try:
                piece = await body.read(min(READ_PIECE, left))
            except Exception as exc:  # the stream broke: as any S3 failure
                raise S3Failed(f"S3 get_object failed: {exc}") from exc
            if not piece:
                raise S3Failed(f"S3 returned less of {source} than recorded")
            if hasher is not None:
                hasher.update(piece)
            if keep:
                buffer.take(memoryview(piece))
            left -= len(piece)
    finally:
        body.close()
