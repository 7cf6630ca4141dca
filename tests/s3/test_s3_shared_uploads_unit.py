"""The uploads shared by replicas (s3_shared_uploads.py, s3_shared_upload.py) driven
in-process against the real PostgreSQL and SeaweedFS: what each step records and
stages, the locks taken and given back, letting go when asked, losing the lock
connection, the expiry sweep and the limits. Each "replica" is a store of its own
(its own pool, lock connection and S3 client) in the one test process."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import pytest
import structlog

from eft_server.partial_uploads import PartialQuota, UploadBusy
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import CHANNEL, SharedUpload, UploadTaken, lock_key
from eft_server.storage import StorageError
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    OTHER,
    STAGING,
    MiB,
    advisory_locks,
    digest,
    events,
    file_key,
    parts,
    record,
    replica,
    rows,
    staged,
)
from tests.support.seaweedfs import SeaweedFS

UPLOAD = b"u" * 16
STAGED = f"{CLIENT.hex()}/{UPLOAD.hex()}/"


def test_the_lock_key_is_the_same_on_every_replica() -> None:
    """Replicas of any version must agree on it: pinned, a signed 64-bit number."""
    assert lock_key(bytes(range(16)), b"u" * 16) == -4622115071323516106
    assert lock_key(b"\x01" * 16, b"\x02" * 16) == -6128317088160961646
    assert lock_key(b"\x01" * 16, b"\x03" * 16) != lock_key(b"\x01" * 16, b"\x02" * 16)


def test_a_small_file_is_one_part_completed_with_nothing_left(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    data = os.urandom(1000)
    began = time.time()

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            assert store.local_files_dir is None
            assert await store.remove_leftovers() == 0
            upload = await store.open(CLIENT, UPLOAD, "s.bin", len(data), BLAKE3)
            assert (upload.generation, upload.durable_chunks, upload.read_back) == (1, 0, 0)
            assert await store.measure(upload, CLIENT, "s.bin", 0) == (2**63 - 1, None)
            row = await record(pg)
            assert (row["file_name"], row["size"], row["durable_offset"]) == ("s.bin", 1000, 0)
            assert (row["generation"], row["part_size"], row["digest_algorithm"]) == (1, 5 * MiB, 1)
            assert row["object_key"] == file_key(CLIENT, "s.bin") == upload.object_key
            assert row["store_upload_id"] == upload.s3_upload_id
            assert row["updated_at"] >= began and row["tail_key"] is None
            assert await advisory_locks(pg) == 1
            await upload.write(1, data)
            assert store.usage() == (1, 1000) and upload.received == 1000
            assert await upload.finish() == digest(data)
            url = await upload.commit(CLIENT, "s.bin")
            assert url == f"s3://{bucket}/{file_key(CLIENT, 's.bin')}"
            assert store.usage() == (0, 0) and upload.buffer is None
            assert await rows(pg, "SELECT * FROM uploads_v4") == []
            assert await advisory_locks(pg) == 0

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "s.bin")) == data
    seaweedfs.wait_for_unfinished(bucket, [])


def test_an_empty_file_is_completed_with_one_empty_part(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "empty", 0, BLAKE3)
            await upload.write(1, b"")
            await upload.commit(CLIENT, "empty")

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "empty")) == b""


def test_a_part_is_staged_copied_and_recorded_then_the_tail_on_suspend(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Whole parts: an object of their own under v4/unfinished, a copy in the multipart
    upload, a row. The tail: an object of its own when the connection breaks. A resume
    on the same replica reads back only the tail, and the file completes whole."""
    chunks = [os.urandom(MiB) for _ in range(12)]
    began = time.time()

    async def scenario() -> tuple[str, str]:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "p.bin", 12 * MiB, BLAKE3)
            first_s3_id = upload.s3_upload_id
            for index in range(1, 7):
                await upload.write(index, chunks[index - 1])
            assert upload.written_chunks == 6 and upload.received == 6 * MiB
            assert store.usage() == (1, 6 * MiB)
            assert staged(seaweedfs, bucket) == {STAGED + "g1-p1": 5 * MiB}
            assert seaweedfs.object_bytes(bucket, STAGING + STAGED + "g1-p1") == b"".join(
                chunks[:5]
            )
            row = await record(pg)
            assert (row["durable_offset"], row["tail_key"], row["tail_size"]) == (5 * MiB, None, 0)
            assert row["updated_at"] >= began
            (part,) = await parts(pg)
            assert part == {
                "part_number": 1,
                "size": 5 * MiB,
                "etag": upload._parts[0]["ETag"],
                "source_key": STAGING + STAGED + "g1-p1",
            }
            assert part["etag"]
            await upload.suspend()
            assert upload.buffer is None and store.usage() == (0, 0)
            assert staged(seaweedfs, bucket) == {
                STAGED + "g1-p1": 5 * MiB,
                STAGED + "g1-tail1": MiB,
            }
            assert seaweedfs.object_bytes(bucket, STAGING + STAGED + "g1-tail1") == chunks[5]
            row = await record(pg)
            assert (row["durable_offset"], row["tail_size"]) == (6 * MiB, MiB)
            assert row["tail_key"] == STAGING + STAGED + "g1-tail1"
            assert await advisory_locks(pg) == 0
            assert store._hashers[upload._key][:2] == (1, 6 * MiB)
            await upload.suspend()  # twice: nothing more

            again = await store.open(CLIENT, UPLOAD, "p.bin", 12 * MiB, BLAKE3)
            assert (again.generation, again.durable_chunks, again.read_back) == (2, 6, MiB)
            assert again.received == 6 * MiB and again.s3_upload_id != first_s3_id
            row = await record(pg)
            assert (row["generation"], row["durable_offset"], row["tail_key"]) == (2, 5 * MiB, None)
            assert row["tail_size"] == 0 and row["store_upload_id"] == again.s3_upload_id
            assert (await parts(pg))[0]["etag"] == again._parts[0]["ETag"]
            assert [u["UploadId"] for u in seaweedfs.unfinished_uploads(bucket)] == [
                again.s3_upload_id
            ]
            for index in range(7, 13):
                await again.write(index, chunks[index - 1])
            assert await again.finish() == digest(b"".join(chunks))
            await again.commit(CLIENT, "p.bin")
            assert await rows(pg, "SELECT * FROM upload_parts_v4") == []
            assert await rows(pg, "SELECT * FROM uploads_v4") == []
            return first_s3_id, again.s3_upload_id

    with structlog.testing.capture_logs() as logs:
        first_s3_id, second_s3_id = asyncio.run(scenario())
    assert events(logs, "s3_upload_started") == [
        {
            "event": "s3_upload_started",
            "s3_upload_id": first_s3_id,
            "shared": True,
            "log_level": "info",
        }
    ]
    assert events(logs, "s3_part_recorded") == [
        {"event": "s3_part_recorded", "part": 1, "offset": 5 * MiB, "log_level": "info"},
        {"event": "s3_part_recorded", "part": 2, "offset": 10 * MiB, "log_level": "info"},
    ]
    assert events(logs, "s3_upload_resumed") == [
        {
            "event": "s3_upload_resumed",
            "s3_upload_id": second_s3_id,
            "parts": 1,
            "tail_bytes": MiB,
            "offset": 6 * MiB,
            "read_back": MiB,
            "generation": 2,
            "shared": True,
            "log_level": "info",
        }
    ]
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "p.bin")) == b"".join(chunks)
    assert staged(seaweedfs, bucket) == {}
    seaweedfs.wait_for_unfinished(bucket, [])


def test_a_file_of_whole_parts_completes_without_an_extra_part(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    data = os.urandom(10 * MiB)

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "w.bin", len(data), BLAKE3)
            await upload.write(1, data)  # two parts in one write
            assert len(upload._parts) == 2 and upload.buffer is not None
            assert upload.buffer.filled == 0
            assert [p["part_number"] for p in await parts(pg)] == [1, 2]
            await upload.commit(CLIENT, "w.bin")

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "w.bin")) == data


def test_a_holder_asked_to_let_go_does_and_keeps_its_lock_connection(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The client went to another replica: the holder is told (NOTIFY), cuts its
    connection (here: suspends, as the connection's end does) and unlocks; the taker
    never has to end the holder's session."""
    chunks = [os.urandom(MiB) for _ in range(2)]

    async def scenario() -> None:
        async with (
            replica(seaweedfs, bucket, pg) as here,
            replica(seaweedfs, bucket, pg, let_go_timeout=120) as there,
        ):
            upload = await here.open(CLIENT, UPLOAD, "l.bin", 12 * MiB, BLAKE3)
            for index in (1, 2):
                await upload.write(index, chunks[index - 1])
            cuts: list[asyncio.Task[None]] = []
            upload.on_taken = lambda: cuts.append(asyncio.ensure_future(upload.suspend()))
            lock_connection = here._locks
            assert lock_connection is not None
            taken = await there.open(CLIENT, UPLOAD, "l.bin", 12 * MiB, BLAKE3)
            assert len(cuts) == 1
            await cuts[0]
            assert (taken.generation, taken.durable_chunks, taken.read_back) == (2, 2, 2 * MiB)
            assert here._locks is lock_connection and not lock_connection.is_closed()
            assert here._held == {} and here._released == {} and there._released == {}
            await taken.discard()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    key = lock_key(CLIENT, UPLOAD)
    assert events(logs, "s3_upload_let_go") == [
        {"event": "s3_upload_let_go", "key": key, "log_level": "info"}
    ]


def test_notices_for_other_uploads_or_garbled_are_ignored(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "n.bin", 100, BLAKE3)
            cut: list[int] = []
            upload.on_taken = lambda: cut.append(1)
            key = lock_key(CLIENT, UPLOAD)
            for payload in (f"let-go {key + 1}", "let-go x", "let-go", f"released {key}"):
                store._notified(None, 0, CHANNEL, payload)
            assert cut == []
            store._notified(None, 0, CHANNEL, f"let-go {key}")
            assert cut == [1]
            waiting = store._released.setdefault(key + 1, asyncio.Event())
            store._notified(None, 0, CHANNEL, f"let-go {key + 1}")
            assert not waiting.is_set()
            store._notified(None, 0, CHANNEL, f"released {key + 1}")
            assert waiting.is_set()
            await upload.discard()

    asyncio.run(scenario())


def test_losing_the_lock_connection_fences_every_upload_held(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The session holding the locks ended (terminated by a replica that found this one
    hung): every upload held is cut and may write nothing more; the next open takes a
    new lock connection."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            ids = (b"a" * 16, b"b" * 16)
            uploads = [await store.open(CLIENT, i, f"{i[:1].hex()}", 100, BLAKE3) for i in ids]
            cut = [asyncio.Event(), asyncio.Event()]
            for upload, event in zip(uploads, cut, strict=True):
                await upload.write(1, b"x" * 10)
                upload.on_taken = event.set
            store._locks_lost(object())  # another connection's end: not ours
            assert not any(u.fenced for u in uploads) and len(store._held) == 2
            old = store._locks
            assert old is not None and store._pool is not None
            await store._pool.fetchval("SELECT pg_terminate_backend($1)", old.get_server_pid())
            for event in cut:
                await asyncio.wait_for(event.wait(), 60)  # the bound of a failure only
            assert all(u.fenced for u in uploads) and store._held == {}
            with pytest.raises(UploadTaken):
                await uploads[0].write(2, b"y")
            with pytest.raises(UploadTaken):
                await uploads[1].commit(CLIENT, "62")
            await uploads[0].discard()  # fenced: the record is left to its next holder
            await uploads[1].suspend()
            assert len(await rows(pg, "SELECT * FROM uploads_v4")) == 2
            again = await store.open(CLIENT, ids[0], "61", 100, BLAKE3)
            assert store._locks is not old and again.generation == 2
            await again.discard()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert events(logs, "s3_upload_locks_lost") == [
        {"event": "s3_upload_locks_lost", "uploads": 2, "log_level": "warning"}
    ]


def test_a_second_open_here_cuts_the_first_and_waits_for_it(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg, let_go_timeout=120) as store:
            first = await store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3)
            await first.write(1, b"c" * 40)
            ends: list[asyncio.Task[None]] = []
            first.on_taken = lambda: ends.append(asyncio.ensure_future(first.suspend()))
            second = await store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3)
            assert len(ends) == 1 and ends[0].done()
            assert second.generation == 2 and store._held == {second._key: second}
            await second.discard()

    asyncio.run(scenario())


def test_an_upload_whose_connection_here_does_not_let_go_is_busy(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg, let_go_timeout=0.05) as store:
            first = await store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3)
            with pytest.raises(UploadBusy, match="still open on another connection"):
                await store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3)
            assert store._held == {first._key: first}
            await first.discard()

    asyncio.run(scenario())


def test_two_opens_at_once_here_one_is_busy(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            answers = await asyncio.gather(
                store.open(CLIENT, UPLOAD, "t.bin", 100, BLAKE3),
                store.open(CLIENT, UPLOAD, "t.bin", 100, BLAKE3),
                return_exceptions=True,
            )
            opened = [a for a in answers if isinstance(a, SharedUpload)]
            busy = [a for a in answers if isinstance(a, UploadBusy)]
            assert len(opened) == 1 and len(busy) == 1
            assert "still open on another connection" in str(busy[0])
            assert store._opening == set()
            await opened[0].discard()

    asyncio.run(scenario())


def test_records_unreachable_are_a_storage_error_and_leave_no_lock(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            assert store._pool is not None
            pool = store._pool
            await pool.close()  # the records go away; the lock connection stays
            with pytest.raises(StorageError, match="the upload records are unreachable"):
                await store.open(CLIENT, UPLOAD, "x.bin", 100, BLAKE3)
            assert await advisory_locks(pg) == 0 and store._opening == set()
            assert store._held == {}
            with pytest.raises(StorageError, match="the upload records are unreachable"):
                await store.remove_expired(0)
            await store.enforce_quota(CLIENT, UPLOAD)  # best effort: no error
            # and the lock connection lost too, PostgreSQL nowhere to be found
            assert store._locks is not None
            store._locks.terminate()
            store.pg = replace(pg, host="127.0.0.1", port=1)
            with pytest.raises(StorageError, match="the upload records are unreachable"):
                await store.open(CLIENT, UPLOAD, "x.bin", 100, BLAKE3)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    (unlock,) = events(logs, "s3_upload_unlock_failed")
    assert unlock["key"] == lock_key(CLIENT, UPLOAD) and unlock["log_level"] == "warning"
    assert "pool is closed" in str(unlock["error"])
    (quota,) = events(logs, "partial_quota_not_enforced")
    assert "pool is closed" in str(quota["error"]) and quota["log_level"] == "warning"


def test_a_discarded_upload_leaves_no_record_part_or_lock(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "d.bin", 12 * MiB, BLAKE3)
            await upload.write(1, os.urandom(6 * MiB))
            assert len(staged(seaweedfs, bucket)) == 1
            await upload.discard()
            assert upload.buffer is None and store.usage() == (0, 0)
            assert await rows(pg, "SELECT * FROM uploads_v4") == []
            assert await advisory_locks(pg) == 0

    asyncio.run(scenario())
    assert staged(seaweedfs, bucket) == {}
    seaweedfs.wait_for_unfinished(bucket, [])


def test_a_holder_whose_record_moved_on_keeps_no_tail(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Fenced by the generation alone: the tail is not put (nobody would delete it) and
    the record is left as the new holder wrote it."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "f.bin", 12 * MiB, BLAKE3)
            await upload.write(1, b"t" * 1000)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = 7")
            await upload.suspend()
            assert upload.fenced and upload.buffer is None
            row = await record(pg)
            assert (row["tail_key"], row["durable_offset"]) == (None, 0)
            assert store._hashers == {}

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert events(logs, "s3_tail_not_kept") == [
        {
            "event": "s3_tail_not_kept",
            "error": "another replica took this upload over",
            "log_level": "warning",
        }
    ]
    assert staged(seaweedfs, bucket) == {}


def test_the_sweep_takes_what_nobody_holds_and_orphaned_parts(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Idle past the TTL and unlocked: removed. Held here or on another replica: kept.
    A part object with no record (a stale holder's): removed; one whose name is not an
    upload's: left alone."""
    s3 = seaweedfs.client()
    orphan = STAGING + f"{OTHER.hex()}/{(b'o' * 16).hex()}/g1-p1"
    stray = STAGING + "not-hex/zz/g1-p1"
    for key in (orphan, stray):
        s3.put_object(Bucket=bucket, Key=key, Body=b"left")

    async def scenario() -> tuple[int, int, int]:
        async with replica(seaweedfs, bucket, pg) as here, replica(seaweedfs, bucket, pg) as there:
            idle = await here.open(CLIENT, b"i" * 16, "i.bin", 100, BLAKE3)
            await idle.write(1, b"i" * 10)
            await idle.suspend()
            held_here = await here.open(CLIENT, b"h" * 16, "h.bin", 100, BLAKE3)
            held_there = await there.open(CLIENT, b"t" * 16, "t.bin", 100, BLAKE3)
            kept = await here.remove_expired(3600)
            swept = await here.remove_expired(0)
            names = {r["file_name"] for r in await rows(pg, "SELECT file_name FROM uploads_v4")}
            assert names == {"h.bin", "t.bin"}
            again = await here.remove_expired(0)
            await held_here.discard()
            await held_there.discard()
            return kept, swept, again

    assert asyncio.run(scenario()) == (0, 2, 0)
    assert set(staged(seaweedfs, bucket)) == {"not-hex/zz/g1-p1"}


@pytest.mark.parametrize(
    ("quota", "mine", "theirs", "reason", "dropped_first"),
    [
        (PartialQuota(bytes_per_client=150), 100, 0, "client_bytes", True),
        (PartialQuota(uploads=2), 100, 100, "server_uploads", False),
        (PartialQuota(bytes=250), 100, 100, "server_bytes", False),
    ],
)
def test_the_limits_drop_the_oldest_idle_upload_and_say_why(
    seaweedfs: SeaweedFS,
    bucket: str,
    pg: PgSettings,
    quota: PartialQuota,
    mine: int,
    theirs: int,
    reason: str,
    dropped_first: bool,
) -> None:
    """Oldest first: OTHER's idle upload (when it has one), then CLIENT's first; the
    upload just suspended is spared."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> set[str]:
        async with replica(
            seaweedfs, bucket, pg, quota=quota, on_drop=lambda r, n: dropped.append((r, n))
        ) as store:
            if theirs:
                other = await store.open(OTHER, b"o" * 16, "o.bin", 1000, BLAKE3)
                await other.write(1, b"o" * theirs)
                await other.suspend()
            first = await store.open(CLIENT, b"1" * 16, "1.bin", 1000, BLAKE3)
            await first.write(1, b"1" * mine)
            await first.suspend()
            second = await store.open(CLIENT, b"2" * 16, "2.bin", 1000, BLAKE3)
            await second.write(1, b"2" * 100)
            await second.suspend()
            assert lock_key(OTHER, b"o" * 16) not in store._hashers or not dropped_first
            return {r["file_name"] for r in await rows(pg, "SELECT file_name FROM uploads_v4")}

    with structlog.testing.capture_logs() as logs:
        left = asyncio.run(scenario())
    assert dropped == [(reason, 100)]
    owner, upload_id = (CLIENT, b"1" * 16) if dropped_first else (OTHER, b"o" * 16)
    assert events(logs, "partial_upload_dropped") == [
        {
            "event": "partial_upload_dropped",
            "client_id": owner.hex(),
            "upload_id": upload_id.hex(),
            "bytes": 100,
            "reason": reason,
            "log_level": "warning",
        }
    ]
    assert left == ({"2.bin"} if dropped_first else {"1.bin", "2.bin"})


def test_the_limits_spare_uploads_being_written(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    dropped: list[tuple[str, int]] = []

    async def scenario() -> int:
        quota = PartialQuota(uploads_per_client=1, uploads=1)
        async with (
            replica(
                seaweedfs, bucket, pg, quota=quota, on_drop=lambda r, n: dropped.append((r, n))
            ) as here,
            replica(seaweedfs, bucket, pg, quota=quota) as there,
        ):
            writing_here = await here.open(CLIENT, b"1" * 16, "1.bin", 1000, BLAKE3)
            writing_there = await there.open(CLIENT, b"2" * 16, "2.bin", 1000, BLAKE3)
            third = await here.open(CLIENT, b"3" * 16, "3.bin", 1000, BLAKE3)
            count = len(await rows(pg, "SELECT 1 FROM uploads_v4"))
            for upload in (writing_here, writing_there, third):
                await upload.discard()
            return count

    assert asyncio.run(scenario()) == 3
    assert dropped == []


def test_a_dropped_upload_loses_its_kept_digest_state(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        quota = PartialQuota(uploads_per_client=1)
        async with replica(seaweedfs, bucket, pg, quota=quota) as store:
            first = await store.open(CLIENT, b"1" * 16, "1.bin", 1000, BLAKE3)
            await first.write(1, b"1" * 10)
            await first.suspend()
            assert list(store._hashers) == [first._key]
            second = await store.open(CLIENT, b"2" * 16, "2.bin", 1000, BLAKE3)
            assert store._hashers == {}
            await second.discard()

    asyncio.run(scenario())


def test_the_digest_states_kept_are_bounded_oldest_first(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg, quota=PartialQuota(uploads=2)) as store:
            for key in (1, 2, 1, 3):
                store.keep_hasher(key, key, 0, object())  # type: ignore[arg-type]
            assert list(store._hashers) == [1, 3]
            assert store._hashers[3][:2] == (3, 0)

    asyncio.run(scenario())


def test_a_part_after_the_record_moved_on_is_refused_and_not_recorded(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Fencing by the generation alone, the lock still held: the part's record is
    refused, the offset stays, and so does the new holder's record when this one
    gives up."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "m.bin", 12 * MiB, BLAKE3)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = 5")
            with pytest.raises(UploadTaken, match=r"^another replica took this upload over$"):
                await upload.write(1, os.urandom(5 * MiB))
            assert upload.fenced
            assert await parts(pg) == [] and (await record(pg))["durable_offset"] == 0
            with pytest.raises(UploadTaken):
                await upload.write(1, b"again")  # fenced: refused before anything
            await upload.discard()
            assert (await record(pg))["generation"] == 5

    asyncio.run(scenario())


def test_a_discard_after_the_record_moved_on_leaves_the_record(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "m.bin", 100, BLAKE3)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = 5")
            await upload.discard()
            assert (await record(pg))["generation"] == 5
            assert await advisory_locks(pg) == 0

    asyncio.run(scenario())


def test_a_commit_after_the_record_moved_on_completes_nothing(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "m.bin", 100, BLAKE3)
            await upload.write(1, b"m" * 100)
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET generation = 5")
            with pytest.raises(UploadTaken):
                await upload.commit(CLIENT, "m.bin")
            assert upload.fenced and (await record(pg))["generation"] == 5
            await upload.discard()

    asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "m.bin")) is None


def test_records_that_cannot_be_written_or_read_are_storage_errors(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """PostgreSQL gone while writing: a part cannot be recorded (a storage error, not
    a take-over), and a suspend cannot check the record, so it keeps no tail."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            full = await store.open(CLIENT, b"f" * 16, "f.bin", 12 * MiB, BLAKE3)
            tail = await store.open(CLIENT, b"t" * 16, "t.bin", 12 * MiB, BLAKE3)
            await tail.write(1, b"t" * 1000)
            assert store._pool is not None
            await store._pool.close()
            with pytest.raises(StorageError, match="the upload record could not be written"):
                await full.write(1, os.urandom(5 * MiB))
            assert not full.fenced
            await tail.suspend()
            assert not tail.fenced and tail.buffer is None

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    (not_kept,) = events(logs, "s3_tail_not_kept")
    assert str(not_kept["error"]).startswith("the upload record could not be read: ")
    assert set(staged(seaweedfs, bucket)) == {f"{CLIENT.hex()}/{(b'f' * 16).hex()}/g1-p1"}
