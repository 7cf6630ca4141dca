"""More of the shared uploads' store (s3_shared_uploads.py, s3_shared_sweep.py) on the
real PostgreSQL and SeaweedFS, in-process, written against the mutants that survived
test_s3_shared_uploads_unit.py (docs/TESTING.md, "Fifth round"): what the expiry sweep
removes of the staged objects and what it never touches, how it counts, its clock."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
import structlog
from botocore.exceptions import ClientError

from eft_server import s3_shared_sweep
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import CHANNEL, lock_key
from tests.s3.conftest import PREFIX
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    OTHER,
    STAGING,
    advisory_locks,
    connect,
    events,
    file_key,
    replica,
    rows,
    staged,
)
from tests.support.seaweedfs import SeaweedFS


def _orphan(client_id: bytes, upload_id: bytes, what: str = "g1-p1") -> str:
    """The key of a staged object of an upload that has no record."""
    return f"{client_id.hex()}/{upload_id.hex()}/{what}"


def test_a_sweep_with_nothing_staged_removes_nothing(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """No staged object at all (S3's listing then has no ``Contents``): nothing to do."""

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            return await store.remove_expired(0)

    assert asyncio.run(scenario()) == 0


def test_a_sweep_that_cannot_list_the_staged_objects_counts_none(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The bucket gone under a running replica: the orphans are left to a later sweep,
    and none is counted as removed."""

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            seaweedfs.client().delete_bucket(Bucket=bucket)
            return await store.remove_expired(0)

    assert asyncio.run(scenario()) == 0


def test_a_sweep_removes_every_orphan_and_nothing_outside_the_staging_area(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Each orphan counted, however deep its key under its upload's prefix; a stored file
    elsewhere in the bucket is never touched, even one whose key, cut where the staging
    prefix would end, reads as a client and an upload (a version 3 file named in hex),
    nor is what sorts before an orphan and is no upload's (the sweep goes on past it)."""
    s3 = seaweedfs.client()
    orphans = [
        _orphan(CLIENT, b"a" * 16),
        _orphan(CLIENT, b"b" * 16, "old/g1-p1"),
        _orphan(OTHER, b"c" * 16, "g2-tail1"),
    ]
    stray = "0-not-an-upload/g1-p1"  # sorts before every hex key
    v3_file = f"{PREFIX}/files/{CLIENT.hex()}/cafe"
    for key in [STAGING + key for key in (*orphans, stray)] + [v3_file]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"left")
    assert v3_file[len(STAGING) :].partition("/")[0] == CLIENT.hex()[8:]  # reads as hex

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            return await store.remove_expired(0)

    assert asyncio.run(scenario()) == 3
    assert staged(seaweedfs, bucket) == {stray: 4}
    assert seaweedfs.object_bytes(bucket, v3_file) == b"left"


def test_the_sweep_keeps_orphans_as_young_as_its_cutoff_and_goes_on_past_them(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orphan modified at the cutoff itself is not idle ``ttl`` seconds: kept. One
    sorted after it and older is removed. The module's clock is set to the young
    object's S3 time, so the cutoff falls on it exactly (no margin on the wall clock)."""
    s3 = seaweedfs.client()
    young, old = _orphan(CLIENT, b"a" * 16), _orphan(CLIENT, b"b" * 16)

    def modified(key: str) -> float:
        answer = s3.head_object(Bucket=bucket, Key=STAGING + key)
        return float(answer["LastModified"].timestamp())

    s3.put_object(Bucket=bucket, Key=STAGING + old, Body=b"old")
    s3.put_object(Bucket=bucket, Key=STAGING + young, Body=b"young")
    while modified(young) <= modified(old):
        # S3 times are whole seconds: put it again until the server's clock has ticked
        s3.put_object(Bucket=bucket, Key=STAGING + young, Body=b"young")
    now = modified(young)
    monkeypatch.setattr(s3_shared_sweep, "time", types.SimpleNamespace(time=lambda: now))

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            return await store.remove_expired(0)

    assert asyncio.run(scenario()) == 1
    assert staged(seaweedfs, bucket) == {young: 5}


def test_a_sweep_goes_on_past_uploads_being_written_and_leaves_no_lock_of_its_own(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Records come back in the table's order, here the ones being written first (the
    idle one was written since, and PostgreSQL appends a row's new version): the sweep
    skips those and still takes the idle one, and gives back the lock it took for it."""

    async def scenario() -> tuple[int, int, set[str]]:
        async with replica(seaweedfs, bucket, pg) as here, replica(seaweedfs, bucket, pg) as there:
            held_here = await here.open(CLIENT, b"h" * 16, "h.bin", 100, BLAKE3)
            held_there = await there.open(CLIENT, b"t" * 16, "t.bin", 100, BLAKE3)
            idle = await here.open(CLIENT, b"i" * 16, "i.bin", 100, BLAKE3)
            await idle.write(1, b"i" * 10)
            await idle.suspend()
            swept = await here.remove_expired(0)
            locks = await advisory_locks(pg)  # the two holders'
            names = {r["file_name"] for r in await rows(pg, "SELECT file_name FROM uploads_v4")}
            await held_here.discard()
            await held_there.discard()
            return swept, locks, names

    assert asyncio.run(scenario()) == (1, 2, {"h.bin", "t.bin"})
    assert staged(seaweedfs, bucket) == {}


def test_a_swept_upload_s3_no_longer_knows_is_no_warning(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """S3 answering ``NoSuchUpload`` to the abort (the multipart upload removed by a
    lifecycle rule, say) is what the abort wanted: the record and the staged tail go,
    and no warning is logged. (SeaweedFS forgives a second abort of an upload it
    issued, so the record is given an upload id it never issued.)"""

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            idle = await store.open(CLIENT, b"i" * 16, "i.bin", 100, BLAKE3)
            await idle.write(1, b"i" * 10)
            await idle.suspend()
            seaweedfs.client().abort_multipart_upload(
                Bucket=bucket, Key=idle.object_key, UploadId=idle.s3_upload_id
            )
            assert store._pool is not None
            await store._pool.execute("UPDATE uploads_v4 SET store_upload_id = 'never-issued'")
            return await store.remove_expired(0)

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(scenario()) == 1
    assert [e for e in logs if e["log_level"] == "warning"] == []
    assert staged(seaweedfs, bucket) == {}


def test_a_swept_upload_whose_bucket_is_gone_is_dropped_with_warnings(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """S3 refusing the abort and the listing of the staged objects (the bucket removed
    under a running replica): each is logged with what was left and why, and the record
    is dropped all the same (nothing in S3 is left to resume from)."""

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        async with replica(seaweedfs, bucket, pg) as store:
            idle = await store.open(CLIENT, b"i" * 16, "i.bin", 100, BLAKE3)
            await idle.write(1, b"i" * 10)
            await idle.suspend()
            seaweedfs.client().delete_bucket(Bucket=bucket)  # SeaweedFS: contents and all
            swept = await store.remove_expired(0)
            return swept, await rows(pg, "SELECT * FROM uploads_v4")

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(scenario()) == (1, [])
    (aborted,) = events(logs, "s3_abort_failed")
    assert aborted["key"] == file_key(CLIENT, "i.bin") and aborted["log_level"] == "warning"
    assert "NoSuchBucket" in str(aborted["error"])
    (left,) = events(logs, "s3_staging_not_deleted")
    assert left["prefix"] == STAGING + _orphan(CLIENT, b"i" * 16, "")
    assert left["log_level"] == "warning" and "NoSuchBucket" in str(left["error"])


def test_a_record_an_older_server_wrote_is_swept_without_an_abort(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Schema 2's records have no object key (the columns came with schema 3): there is
    no multipart upload of this design to abort, so none is tried and nothing warned."""

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        async with replica(seaweedfs, bucket, pg) as store:
            assert store._pool is not None
            await store._pool.execute(
                "INSERT INTO uploads_v4 (client_id, upload_id, file_name, size,"
                " store_upload_id, durable_offset, updated_at) VALUES ($1, $2, 'o.bin', 100,"
                " 'an-older-upload', 0, 0)",
                CLIENT,
                b"o" * 16,
            )
            swept = await store.remove_expired(0)
            return swept, await rows(pg, "SELECT * FROM uploads_v4")

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(scenario()) == (1, [])
    assert [e for e in logs if e["log_level"] == "warning"] == []


class _RefusingDeletes:
    """The real S3 client's calls, but S3 refuses the deletes of the keys named (as it
    does for credentials without ``s3:DeleteObject``)."""

    def __init__(self, api: Any, refused: set[str]) -> None:
        self.api = api
        self.refused = refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def delete_object(self, **arguments: Any) -> Any:
        if arguments["Key"] in self.refused:
            error: Any = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
            raise ClientError(error, "DeleteObject")
        return await self.api.delete_object(**arguments)


def test_an_orphan_s3_will_not_delete_does_not_stop_the_sweep(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The sweep goes on to the next orphan and counts only what it removed; the one
    refused is left for a later sweep."""
    s3 = seaweedfs.client()
    refused, other = _orphan(CLIENT, b"a" * 16), _orphan(CLIENT, b"b" * 16)
    for key in (refused, other):
        s3.put_object(Bucket=bucket, Key=STAGING + key, Body=b"left")

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg) as store:
            store.client.api = _RefusingDeletes(store.client.api, {STAGING + refused})
            return await store.remove_expired(0)

    assert asyncio.run(scenario()) == 1
    assert staged(seaweedfs, bucket) == {refused: 4}


def test_a_holder_that_does_not_let_go_loses_its_lock_session_named_in_the_log(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The taker asks, gets no answer within ``let_go_timeout`` (the holder is hung:
    here, nothing is listening on its upload), ends the holder's lock session and says
    which; the holder finds its locks lost and its upload fenced."""
    key = lock_key(CLIENT, b"h" * 16)

    async def scenario() -> int:
        async with (
            replica(seaweedfs, bucket, pg) as here,
            replica(seaweedfs, bucket, pg, let_go_timeout=0.05) as there,
        ):
            held = await here.open(CLIENT, b"h" * 16, "h.bin", 100, BLAKE3)
            assert here._locks is not None
            pid = here._locks.get_server_pid()
            lost = asyncio.Event()
            held.on_taken = lambda: lost.set() if held.fenced else None  # not the let-go
            taken = await there.open(CLIENT, b"h" * 16, "h.bin", 100, BLAKE3)
            assert taken.generation == 2 and there._released == {}
            if not held.fenced:
                await asyncio.wait_for(lost.wait(), 60)  # the bound of a failure only
            await taken.discard()
            return pid

    with structlog.testing.capture_logs() as logs:
        pid = asyncio.run(scenario())
    assert events(logs, "s3_upload_holder_terminated") == [
        {"event": "s3_upload_holder_terminated", "key": key, "pid": pid, "log_level": "warning"}
    ]
    assert events(logs, "s3_upload_locks_lost") == [
        {"event": "s3_upload_locks_lost", "uploads": 1, "log_level": "warning"}
    ]


def test_a_discard_deletes_every_staged_object_past_a_listing_page(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """An upload of more than 1,000 parts (5 GiB at the smallest part) has more staged
    objects than S3 lists at once: all of them go, not the first page only. (Put here
    directly: 1,001 small objects under the upload's staging prefix.)"""
    s3 = seaweedfs.client()
    upload_id = b"d" * 16
    for number in range(1, 1002):
        key = STAGING + _orphan(CLIENT, upload_id, f"g1-p{number}")
        s3.put_object(Bucket=bucket, Key=key, Body=b"p")

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, upload_id, "d.bin", 100, BLAKE3)
            await upload.discard()

    asyncio.run(scenario())
    assert staged(seaweedfs, bucket) == {}


class _LockSessionEndsOnDelete:
    """The real S3 client's calls; before the first delete, the replica's lock session
    is ended (as a PostgreSQL restart would) and the replica has noticed."""

    def __init__(self, api: Any, store: Any) -> None:
        self.api = api
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def delete_object(self, **arguments: Any) -> Any:
        locks = self.store._locks
        if locks is not None:
            ended = asyncio.Event()
            locks.add_termination_listener(lambda _: ended.set())  # after the store's own
            pid = locks.get_server_pid()
            await self.store._pool.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
            await asyncio.wait_for(ended.wait(), 60)  # the bound of a failure only
        return await self.api.delete_object(**arguments)


def test_a_sweep_whose_lock_session_ends_midway_still_finishes(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The lock on the upload being swept went with the session: there is nothing left
    to unlock, and the sweep finishes its work instead of failing."""

    async def scenario() -> tuple[int, list[dict[str, Any]], int]:
        async with replica(seaweedfs, bucket, pg) as store:
            idle = await store.open(CLIENT, b"i" * 16, "i.bin", 100, BLAKE3)
            await idle.write(1, b"i" * 10)
            await idle.suspend()
            store.client.api = _LockSessionEndsOnDelete(store.client.api, store)
            swept = await store.remove_expired(0)
            return swept, await rows(pg, "SELECT * FROM uploads_v4"), await advisory_locks(pg)

    assert asyncio.run(scenario()) == (1, [], 0)
    assert staged(seaweedfs, bucket) == {}


def test_a_replica_that_lets_go_tells_the_others(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Unlocking announces it (NOTIFY ``released <key>``): a replica waiting to take
    the upload goes on at once instead of after its ``let_go_timeout``. A marker sent
    afterwards from another session arrives after it (notices are delivered in commit
    order), so a missing notice fails at once."""
    key = lock_key(CLIENT, b"n" * 16)

    async def scenario() -> list[str]:
        heard: list[str] = []
        marker = asyncio.Event()

        def listen(_connection: object, _pid: int, _channel: str, payload: object) -> None:
            heard.append(str(payload))
            if payload == "marker":
                marker.set()

        listener = await connect(pg)
        try:
            await listener.add_listener(CHANNEL, listen)
            async with replica(seaweedfs, bucket, pg) as store:
                upload = await store.open(CLIENT, b"n" * 16, "n.bin", 100, BLAKE3)
                await upload.discard()
            await listener.execute(f"NOTIFY {CHANNEL}, 'marker'")
            await asyncio.wait_for(marker.wait(), 60)  # the bound of a failure only
        finally:
            await listener.close()
        return heard

    assert asyncio.run(scenario()) == [f"released {key}", "marker"]
