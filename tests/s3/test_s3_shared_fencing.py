"""The records of shared unfinished uploads (s3_shared_uploads.py) on the real
PostgreSQL and SeaweedFS, in one process: a holder whose upload was taken over writes
nothing more of it, and a holder that does not let go loses its lock to the taker."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from eft_protocol.v4.file_digest import DigestAlgorithm, hasher_for
from eft_server.partial_uploads import PartialQuota
from eft_server.pg_connect import PgSettings, parse_registry_url
from eft_server.pg_schema import migrate
from eft_server.s3_settings import parse_store_url, s3_settings
from eft_server.s3_shared_upload import SharedUpload, UploadTaken
from eft_server.s3_shared_uploads import SharedUnfinishedUploads
from eft_server.s3_store import S3Client
from tests.s3.conftest import PREFIX
from tests.support.postgres import PostgresCluster
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20
CLIENT = bytes(range(16))
UPLOAD = b"u" * 16


async def _store(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, let_go: float
) -> SharedUnfinishedUploads:
    client = S3Client(
        s3_settings(parse_store_url(f"s3://{bucket}/{PREFIX}"), seaweedfs.server_env())
    )
    await client.open()
    store = SharedUnfinishedUploads(client, pg, let_go_timeout=let_go)
    await store.connect()
    return store


async def _prepare(pg: PgSettings) -> None:
    connection = await asyncpg.connect(
        host=pg.host, port=pg.port, database=pg.database, user=pg.user, password=pg.password
    )
    try:
        await migrate(connection)
        await connection.execute(
            "INSERT INTO clients_v4 VALUES ($1, 'fen', $2, $3, $3)", CLIENT, b"k" * 32, time.time()
        )
    finally:
        await connection.close()


def test_a_holder_taken_over_writes_nothing_more(
    seaweedfs: SeaweedFS, bucket: str, postgres: PostgresCluster, pg_url: str
) -> None:
    pg = parse_registry_url(pg_url, postgres.server_env())
    chunk = os.urandom(MiB)

    async def scenario() -> None:
        await _prepare(pg)
        first = await _store(seaweedfs, bucket, pg, let_go=0.2)
        second = await _store(seaweedfs, bucket, pg, let_go=0.2)
        try:
            size = 12 * MiB
            stale = await first.open(CLIENT, UPLOAD, "f.bin", size, DigestAlgorithm.BLAKE3)
            for index in range(1, 7):  # one whole part (5 MiB) recorded, one chunk buffered
                await stale.write(index, chunk)
            # The holder ignores the request to let go (as a hung one would): the taker
            # ends its lock session after let_go_timeout, and resumes after the part.
            taker = await second.open(CLIENT, UPLOAD, "f.bin", size, DigestAlgorithm.BLAKE3)
            assert taker.durable_chunks == 5
            assert taker.generation == 2
            # Woken, the stale holder can neither add a part nor complete the file.
            try:
                for index in range(7, 12):
                    await stale.write(index, chunk)
                raise AssertionError("a stale holder wrote a part")
            except UploadTaken:
                pass
            try:
                await stale.commit(CLIENT, "f.bin")
                raise AssertionError("a stale holder completed the file")
            except UploadTaken:
                pass
            for index in range(6, 13):
                await taker.write(index, chunk)
            await taker.finish()
            await taker.commit(CLIENT, "f.bin")
        finally:
            await first.close()
            await second.close()
            await first.client.close()
            await second.client.close()

    asyncio.run(scenario())
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{CLIENT.hex()}/f.bin")
    assert stored == chunk * 12
    seaweedfs.wait_for_unfinished(bucket, [])


def test_a_part_is_recorded_only_by_the_current_generation(
    seaweedfs: SeaweedFS, bucket: str, postgres: PostgresCluster, pg_url: str
) -> None:
    """The fencing token alone (the holder's lock still held): once the record's
    generation moved on, the holder's next part is refused and the offset stays."""
    pg = parse_registry_url(pg_url, postgres.server_env())
    chunk = os.urandom(MiB)

    async def scenario() -> int:
        await _prepare(pg)
        store = await _store(seaweedfs, bucket, pg, let_go=0.2)
        try:
            upload = await store.open(CLIENT, UPLOAD, "g.bin", 8 * MiB, DigestAlgorithm.BLAKE3)
            for index in range(1, 5):
                await upload.write(index, chunk)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = generation + 1")
            try:
                await upload.write(5, chunk)  # the part is full: its record is refused
                raise AssertionError("a fenced holder recorded a part")
            except UploadTaken:
                pass
            offset: int = await store._pool.fetchval("SELECT durable_offset FROM uploads_v4")
            await upload.discard()  # fenced: it leaves the record to its new holder
            return offset
        finally:
            await store.close()
            await store.client.close()

    assert asyncio.run(scenario()) == 0


def test_an_abandoned_upload_expires_with_its_parts(
    seaweedfs: SeaweedFS, bucket: str, postgres: PostgresCluster, pg_url: str
) -> None:
    """The sweep: a suspended upload idle past the TTL loses its record, its multipart
    upload and its part and tail objects."""
    pg = parse_registry_url(pg_url, postgres.server_env())
    chunk = os.urandom(MiB)

    async def scenario() -> tuple[int, int]:
        await _prepare(pg)
        store = await _store(seaweedfs, bucket, pg, let_go=0.2)
        try:
            upload = await store.open(CLIENT, UPLOAD, "h.bin", 8 * MiB, DigestAlgorithm.BLAKE3)
            for index in range(1, 7):  # a part and a chunk of tail
                await upload.write(index, chunk)
            await upload.suspend()
            assert await store.remove_expired(3600) == 0  # not idle long enough
            removed = await store.remove_expired(0)
            assert store._pool is not None
            left: int = await store._pool.fetchval("SELECT count(*) FROM upload_parts_v4")
            return removed, left
        finally:
            await store.close()
            await store.client.close()

    assert asyncio.run(scenario()) == (1, 0)
    seaweedfs.wait_for_unfinished(bucket, [])
    objects = seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/v4/unfinished/")
    assert objects.get("Contents", []) == []


def test_a_resume_on_the_same_replica_reads_back_only_the_tail(
    seaweedfs: SeaweedFS, bucket: str, postgres: PostgresCluster, pg_url: str
) -> None:
    """The replica that suspended an upload kept its digest state: its resume reads the
    tail back (into the part buffer) but not the parts; another replica reads all of
    it. Either way the digest is the file's."""
    pg = parse_registry_url(pg_url, postgres.server_env())
    chunks = [os.urandom(MiB) for _ in range(14)]
    size = 14 * MiB

    async def scenario() -> list[int]:
        await _prepare(pg)
        here = await _store(seaweedfs, bucket, pg, let_go=0.2)
        there = await _store(seaweedfs, bucket, pg, let_go=0.2)
        read_back: list[int] = []
        try:
            upload = await here.open(CLIENT, UPLOAD, "r.bin", size, DigestAlgorithm.BLAKE3)
            for index in range(1, 8):  # a part and two chunks of tail
                await upload.write(index, chunks[index - 1])
            await upload.suspend()
            upload = await here.open(CLIENT, UPLOAD, "r.bin", size, DigestAlgorithm.BLAKE3)
            read_back.append(upload.read_back)
            for index in range(8, 12):  # two parts and a chunk of tail
                await upload.write(index, chunks[index - 1])
            await upload.suspend()
            upload = await there.open(CLIENT, UPLOAD, "r.bin", size, DigestAlgorithm.BLAKE3)
            assert isinstance(upload, SharedUpload)  # s3_shared_resume's, taken over
            read_back.append(upload.read_back)
            for index in range(12, 15):
                await upload.write(index, chunks[index - 1])
            digest = await upload.finish()
            expected = hasher_for(DigestAlgorithm.BLAKE3)
            expected.update(b"".join(chunks))
            assert digest == expected.digest()
            await upload.commit(CLIENT, "r.bin")
        finally:
            for store in (here, there):
                await store.close()
                await store.client.close()
        return read_back

    assert asyncio.run(scenario()) == [2 * MiB, 11 * MiB]
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{CLIENT.hex()}/r.bin")
    assert stored == b"".join(chunks)


def test_the_limits_drop_the_clients_oldest_idle_upload(
    seaweedfs: SeaweedFS, bucket: str, postgres: PostgresCluster, pg_url: str
) -> None:
    """--max-partial-uploads-per-client over the cluster's records: a second upload of
    a client allowed one drops the first (idle) one, and says so (the metric's reason)."""
    pg = parse_registry_url(pg_url, postgres.server_env())
    dropped: list[tuple[str, int]] = []

    async def scenario() -> list[bytes]:
        await _prepare(pg)
        client = S3Client(
            s3_settings(parse_store_url(f"s3://{bucket}/{PREFIX}"), seaweedfs.server_env())
        )
        await client.open()
        store = SharedUnfinishedUploads(
            client,
            pg,
            PartialQuota(uploads_per_client=1),
            on_drop=lambda reason, size: dropped.append((reason, size)),
        )
        await store.connect()
        try:
            first = await store.open(CLIENT, b"1" * 16, "a.bin", 8 * MiB, DigestAlgorithm.BLAKE3)
            for index in range(1, 3):
                await first.write(index, os.urandom(MiB))
            await first.suspend()  # alone: within the limit, kept
            second = await store.open(CLIENT, b"2" * 16, "b.bin", 8 * MiB, DigestAlgorithm.BLAKE3)
            await second.discard()
            assert store._pool is not None
            rows = await store._pool.fetch("SELECT upload_id FROM uploads_v4")
            return [row["upload_id"] for row in rows]
        finally:
            await store.close()
            await client.close()

    assert asyncio.run(scenario()) == []  # the first dropped, the second discarded
    assert dropped == [("client_uploads", 2 * MiB)]
    seaweedfs.wait_for_unfinished(bucket, [])
