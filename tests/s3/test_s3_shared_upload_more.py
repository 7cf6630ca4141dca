"""One shared unfinished upload being written (s3_shared_upload.py), the cases the
mutation run of 2026-12-06 found untested, in-process against the real PostgreSQL and
SeaweedFS: an upload once fenced refuses every write and commit before touching S3 or
the record, saying why; a chunk out of turn is refused before anything is written."""

from __future__ import annotations

import asyncio

import pytest

from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import UploadTaken
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    MiB,
    advisory_locks,
    file_key,
    parts,
    record,
    replica,
    staged,
)
from tests.support.seaweedfs import SeaweedFS

UPLOAD = b"q" * 16
TAKEN = r"^another replica took this upload over$"


def test_a_fenced_upload_refuses_writes_and_commits_saying_why(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Fenced once (a part's record refused: the record moved on), every later write
    and commit is refused up front with the same reason, and reaches neither S3 nor the
    record: no part staged, no file completed, the new holder's record untouched."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "f.bin", 12 * MiB, BLAKE3)
            await upload.write(1, b"f" * MiB)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = 5")
            with pytest.raises(UploadTaken, match=TAKEN):
                await upload.write(2, b"f" * (4 * MiB))  # fills the part: its record refused
            assert upload.fenced
            staged_then = staged(seaweedfs, bucket)
            with pytest.raises(UploadTaken, match=TAKEN):
                await upload.write(2, b"f" * MiB)  # the same chunk again: refused first
            with pytest.raises(UploadTaken, match=TAKEN):
                await upload.commit(CLIENT, "f.bin")
            assert staged(seaweedfs, bucket) == staged_then
            assert await parts(pg) == []
            row = await record(pg)
            assert (row["generation"], row["durable_offset"]) == (5, 0)
            await upload.discard()

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "f.bin")) is None


def test_a_chunk_out_of_turn_is_refused_before_anything_is_written(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The connection hands chunks over in order, each once: any other is a programming
    error, caught before the digest or the buffer takes a byte."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "o.bin", 12 * MiB, BLAKE3)
            with pytest.raises(AssertionError):
                await upload.write(2, b"o" * MiB)
            await upload.write(1, b"o" * MiB)
            with pytest.raises(AssertionError):
                await upload.write(1, b"o" * MiB)  # again
            assert (upload.written_chunks, upload.received) == (1, MiB)
            await upload.discard()
            with pytest.raises(AssertionError):  # discarded: no buffer to write into
                await upload.write(2, b"o" * MiB)

    asyncio.run(scenario())


def test_a_record_that_cannot_be_deleted_after_the_commit_is_left_for_the_sweep(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The file is complete when its record's DELETE fails (PostgreSQL refuses it: a
    trigger here): the commit still answers the file's place, the staged objects go
    and the lock is freed; the record is left for the expiry sweep."""
    data = b"d" * 1000

    async def scenario() -> str:
        async with replica(seaweedfs, bucket, pg) as store:
            assert store._pool is not None
            await store._pool.execute(
                "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'deletes refused'; END $$;"
                " CREATE TRIGGER refuse_delete BEFORE DELETE ON uploads_v4"
                " FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
            )
            upload = await store.open(CLIENT, UPLOAD, "d.bin", len(data), BLAKE3)
            await upload.write(1, data)
            url = await upload.commit(CLIENT, "d.bin")
            assert await advisory_locks(pg) == 0 and upload.buffer is None
            row = await record(pg)
            assert (row["file_name"], row["generation"], row["durable_offset"]) == (
                "d.bin",
                1,
                len(data),
            )
            return url

    assert asyncio.run(scenario()) == f"s3://{bucket}/{file_key(CLIENT, 'd.bin')}"
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "d.bin")) == data
    assert staged(seaweedfs, bucket) == {}
