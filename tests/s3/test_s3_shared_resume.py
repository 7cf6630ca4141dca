"""Opening a shared unfinished upload (s3_shared_resume.py) in-process against the real
PostgreSQL and SeaweedFS: a record for another file, or one its parts contradict, is
dropped and the upload starts afresh; a resume never keeps the file's last chunk; the
digest state kept by the replica that suspended the upload is reused only at the very
offset and generation it was kept for, else the kept bytes are read back; an S3 object
shorter than its record fails the open and leaves nothing locked."""

from __future__ import annotations

import asyncio
import os

import pytest
import structlog

from eft_protocol.v4.file_digest import DigestAlgorithm
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_resume import READ_PIECE
from eft_server.s3_store import PartBuffer
from eft_server.storage import StorageError
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    STAGING,
    MiB,
    advisory_locks,
    digest,
    file_key,
    parts,
    record,
    replica,
    rows,
    staged,
)
from tests.support.seaweedfs import SeaweedFS

UPLOAD = b"r" * 16


def test_the_read_back_piece_is_a_mebibyte() -> None:
    assert MiB == READ_PIECE


@pytest.mark.parametrize(
    ("name", "size", "algorithm"),
    [
        ("other.bin", 3 * MiB, BLAKE3),
        ("a.bin", 3 * MiB + 1, BLAKE3),
        ("a.bin", 3 * MiB, DigestAlgorithm.SHA256),
    ],
)
def test_a_record_for_another_file_is_dropped_and_the_upload_starts_afresh(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, name: str, size: int, algorithm: int
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            old = await store.open(CLIENT, UPLOAD, "a.bin", 3 * MiB, BLAKE3)
            await old.write(1, os.urandom(MiB))
            await old.suspend()
            assert len(staged(seaweedfs, bucket)) == 1  # the tail
            new = await store.open(CLIENT, UPLOAD, name, size, algorithm)
            assert (new.generation, new.durable_chunks, new.read_back) == (1, 0, 0)
            assert new.object_key == file_key(CLIENT, name)
            row = await record(pg)
            assert (row["file_name"], row["size"], row["digest_algorithm"]) == (
                name,
                size,
                algorithm,
            )
            assert (row["generation"], row["durable_offset"]) == (1, 0)
            assert staged(seaweedfs, bucket) == {}
            uploads = seaweedfs.unfinished_uploads(bucket)
            assert [u["UploadId"] for u in uploads] == [new.s3_upload_id]
            data = os.urandom(size)
            await new.write(1, data)
            assert await new.finish() == digest(data, algorithm)
            await new.commit(CLIENT, name)

    asyncio.run(scenario())


PARTS_DIFFER = "parts differ from the record"
OFFSET_DIFFERS = "offset differs from the parts"


@pytest.mark.parametrize(
    ("contradiction", "why"),
    [
        ("UPDATE upload_parts_v4 SET part_number = 2", PARTS_DIFFER),
        ("UPDATE upload_parts_v4 SET size = size - 1", PARTS_DIFFER),
        ("UPDATE upload_parts_v4 SET source_key = ''", PARTS_DIFFER),
        ("UPDATE upload_parts_v4 SET source_key = NULL", PARTS_DIFFER),
        ("UPDATE uploads_v4 SET durable_offset = durable_offset + 1", OFFSET_DIFFERS),
        ("UPDATE uploads_v4 SET tail_key = NULL", OFFSET_DIFFERS),
        ("UPDATE uploads_v4 SET tail_size = 0", OFFSET_DIFFERS),
        ("UPDATE uploads_v4 SET object_key = NULL", None),
    ],
)
def test_a_record_its_parts_contradict_is_dropped_and_the_upload_starts_afresh(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, contradiction: str, why: str | None
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            old = await store.open(CLIENT, UPLOAD, "c.bin", 12 * MiB, BLAKE3)
            await old.write(1, os.urandom(6 * MiB))  # a part and a tail
            await old.suspend()
            assert store._pool is not None
            await store._pool.execute(contradiction)
            new = await store.open(CLIENT, UPLOAD, "c.bin", 12 * MiB, BLAKE3)
            assert (new.generation, new.durable_chunks, new.read_back) == (1, 0, 0)
            assert await parts(pg) == [] and staged(seaweedfs, bucket) == {}
            assert (await record(pg))["store_upload_id"] == new.s3_upload_id
            await new.discard()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    said = [entry for entry in logs if entry["event"] == "s3_resume_impossible"]
    assert said == (
        [{"event": "s3_resume_impossible", "error": why, "log_level": "warning"}] if why else []
    )


def test_a_whole_file_suspended_resumes_before_its_last_chunk(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Every byte was recorded but the file not completed: the resume keeps all but the
    last chunk (only the last chunk completes a file). The digest state kept was for the
    whole file, not for that offset: the kept part is read back."""
    chunks = [os.urandom(MiB) for _ in range(6)]

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "w.bin", 6 * MiB, BLAKE3)
            for index in range(1, 7):
                await upload.write(index, chunks[index - 1])
            await upload.suspend()
            again = await store.open(CLIENT, UPLOAD, "w.bin", 6 * MiB, BLAKE3)
            assert (again.durable_chunks, again.read_back, again.received) == (5, 5 * MiB, 5 * MiB)
            assert (await record(pg))["durable_offset"] == 5 * MiB
            await again.write(6, chunks[5])
            assert await again.finish() == digest(b"".join(chunks))
            await again.commit(CLIENT, "w.bin")

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "w.bin")) == b"".join(chunks)


def test_a_tail_that_ends_inside_a_chunk_resumes_at_the_chunk_before(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """6.5 MiB recorded (a part, a tail of 1.5 MiB): the resume is at 6 MiB, so it reads
    back the part and the tail's first MiB, and keeps that MiB as the next part's start."""
    data = os.urandom(12 * MiB)

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "h.bin", len(data), BLAKE3)
            await upload.write(1, data[: 6 * MiB + MiB // 2])
            await upload.suspend()
            row = await record(pg)
            assert (row["durable_offset"], row["tail_size"]) == (6 * MiB + MiB // 2, 3 * MiB // 2)
            again = await store.open(CLIENT, UPLOAD, "h.bin", len(data), BLAKE3)
            assert (again.durable_chunks, again.read_back, again.received) == (6, 6 * MiB, 6 * MiB)
            assert again.buffer is not None and again.buffer.contents() == data[5 * MiB : 6 * MiB]
            for index in range(7, 13):
                await again.write(index, data[(index - 1) * MiB : index * MiB])
            assert await again.finish() == digest(data)
            await again.commit(CLIENT, "h.bin")

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "h.bin")) == data


def test_a_digest_state_kept_for_an_older_generation_is_not_reused(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Suspended here, then taken and suspended at the same offset by another replica:
    the state kept here is of generation 1, the record is at 2, so the whole prefix is
    read back (another replica may have written different bytes)."""
    data = os.urandom(12 * MiB)

    async def scenario() -> list[int]:
        async with replica(seaweedfs, bucket, pg) as here, replica(seaweedfs, bucket, pg) as there:
            upload = await here.open(CLIENT, UPLOAD, "g.bin", len(data), BLAKE3)
            await upload.write(1, data[: 5 * MiB])
            await upload.suspend()
            taken = await there.open(CLIENT, UPLOAD, "g.bin", len(data), BLAKE3)
            await taken.suspend()  # nothing written: the same offset, generation 2
            back = await here.open(CLIENT, UPLOAD, "g.bin", len(data), BLAKE3)
            read = [taken.read_back, back.read_back, back.generation]
            await back.write(6, data[5 * MiB :])
            assert await back.finish() == digest(data)
            await back.commit(CLIENT, "g.bin")
            return read

    assert asyncio.run(scenario()) == [5 * MiB, 5 * MiB, 3]


def test_a_digest_state_kept_at_the_resume_offset_is_reused_without_reading(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    data = os.urandom(12 * MiB)

    async def scenario() -> list[int]:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "k.bin", len(data), BLAKE3)
            await upload.write(1, data[: 10 * MiB])
            await upload.suspend()
            again = await store.open(CLIENT, UPLOAD, "k.bin", len(data), BLAKE3)
            assert len(again._parts) == 2 and again.received == 10 * MiB
            await again.write(11, data[10 * MiB : 11 * MiB])
            await again.suspend()  # resumed, written, suspended: its state still whole
            last = await store.open(CLIENT, UPLOAD, "k.bin", len(data), BLAKE3)
            await last.write(12, data[11 * MiB :])
            assert await last.finish() == digest(data)
            await last.commit(CLIENT, "k.bin")
            return [again.read_back, last.read_back]

    assert asyncio.run(scenario()) == [0, MiB]
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "k.bin")) == data


def test_an_object_shorter_than_its_record_fails_the_open_and_frees_the_upload(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with (
            replica(seaweedfs, bucket, pg) as here,
            replica(seaweedfs, bucket, pg, let_go_timeout=120) as there,
        ):
            upload = await here.open(CLIENT, UPLOAD, "s.bin", 12 * MiB, BLAKE3)
            await upload.write(1, os.urandom(3 * MiB // 2))
            await upload.suspend()
            assert here._pool is not None
            await here._pool.execute(
                "UPDATE uploads_v4 SET durable_offset = $1, tail_size = $1", 2 * MiB
            )
            buffers = PartBuffer.live
            with pytest.raises(StorageError, match=r"less of .*tail0 than recorded"):
                await there.open(CLIENT, UPLOAD, "s.bin", 12 * MiB, BLAKE3)
            assert PartBuffer.live == buffers, "the resume's part buffer given back"
            assert await advisory_locks(pg) == 0 and there._held == {}
            uploads = seaweedfs.unfinished_uploads(bucket)
            assert [u["UploadId"] for u in uploads] == [], "both multipart uploads aborted"
            # the record is left (its next open starts afresh or fails the same way)
            assert (await record(pg))["generation"] == 2

    asyncio.run(scenario())


def test_the_staged_objects_of_a_resume_are_the_new_generations(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The resumed holder stages under its own generation's names, and the record's
    parts are the ones kept."""
    data = os.urandom(11 * MiB)
    staged_prefix = f"{CLIENT.hex()}/{UPLOAD.hex()}/"

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "n.bin", len(data), BLAKE3)
            await upload.write(1, data[: 6 * MiB])
            await upload.suspend()
            again = await store.open(CLIENT, UPLOAD, "n.bin", len(data), BLAKE3)
            await again.write(7, data[6 * MiB : 10 * MiB])
            assert set(staged(seaweedfs, bucket)) == {
                staged_prefix + "g1-p1",
                staged_prefix + "g1-tail1",
                staged_prefix + "g2-p2",
            }
            assert [(p["part_number"], p["source_key"]) for p in await parts(pg)] == [
                (1, STAGING + staged_prefix + "g1-p1"),
                (2, STAGING + staged_prefix + "g2-p2"),
            ]
            await again.write(8, data[10 * MiB :])
            await again.commit(CLIENT, "n.bin")
            assert await rows(pg, "SELECT * FROM uploads_v4") == []

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "n.bin")) == data
