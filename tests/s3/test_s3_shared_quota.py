"""The shared uploads' limits and opening (s3_shared_sweep.py: ``enforce_quota``,
``_enforce``; s3_shared_uploads.py: ``open``) on the real PostgreSQL and SeaweedFS,
in-process, written against the mutants that survived the module's selection
(docs/TESTING.md, "Sixth round … open and quota"): which uploads each limit counts,
where the dropping stops, what it skips and goes on past, and an upload opened again
and again on one replica.

Most records here are written by the test itself, each with its own ``updated_at``, so
the order the limits drop them in is the test's, and ``enforce_quota`` is called as an
upload's open or suspend calls it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from eft_server.partial_uploads import PartialQuota, UploadBusy
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import SharedUnfinishedUploads
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    OTHER,
    advisory_locks,
    connect,
    events,
    replica,
    rows,
)
from tests.support.seaweedfs import SeaweedFS

BUSY = r"^this upload is still open on another connection$"
KEEP = b"k" * 16  # the upload just opened or suspended: spared


async def seed(pg: PgSettings, *uploads: tuple[bytes, bytes, int, float]) -> None:
    """Idle upload records (client, upload id, acknowledged bytes, ``updated_at``), as a
    replica that suspended them left them: locked by nobody, no digest state kept here.
    No multipart upload (``object_key`` NULL): dropping one is only its record."""
    connection = await connect(pg)
    try:
        for client_id, upload_id, offset, updated_at in uploads:
            await connection.execute(
                "INSERT INTO uploads_v4 (client_id, upload_id, file_name, size,"
                " store_upload_id, durable_offset, updated_at) VALUES ($1, $2, $3, 1000,"
                " 'none', $4, $5)",
                client_id,
                upload_id,
                upload_id.decode() + ".bin",
                offset,
                updated_at,
            )
    finally:
        await connection.close()


async def left(pg: PgSettings) -> set[tuple[bytes, bytes]]:
    found = await rows(pg, "SELECT client_id, upload_id FROM uploads_v4")
    return {(row["client_id"], row["upload_id"]) for row in found}


def limited(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, dropped: list[tuple[str, int]]
) -> Any:
    return replica(seaweedfs, bucket, pg, on_drop=lambda r, n: dropped.append((r, n)))


def test_a_clients_limit_counts_and_drops_its_own_uploads_only(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Another client's upload, however old, neither counts against CLIENT's limit nor
    goes to make room under it."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> tuple[set[Any], set[Any]]:
        await seed(pg, (OTHER, b"o" * 16, 10, 1), (CLIENT, b"a" * 16, 10, 2), (CLIENT, KEEP, 0, 3))
        async with limited(seaweedfs, bucket, pg, dropped) as store:
            store.quota = PartialQuota(uploads_per_client=2)  # CLIENT has 2: none over
            await store.enforce_quota(CLIENT, KEEP)
            within = await left(pg)
            store.quota = PartialQuota(uploads_per_client=1)
            await store.enforce_quota(CLIENT, KEEP)
            return within, await left(pg)

    within, after = asyncio.run(scenario())
    assert within == {(OTHER, b"o" * 16), (CLIENT, b"a" * 16), (CLIENT, KEEP)}
    assert after == {(OTHER, b"o" * 16), (CLIENT, KEEP)}
    assert dropped == [("client_uploads", 10)]


def test_the_upload_just_suspended_is_kept_even_over_the_limit_alone(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """``keep`` is spared whether or not it is held: after a suspend it is neither held
    nor opening, and it alone is over the client's bytes."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> set[Any]:
        async with limited(seaweedfs, bucket, pg, dropped) as store:
            store.quota = PartialQuota(bytes_per_client=50)
            upload = await store.open(CLIENT, KEEP, "k.bin", 1000, BLAKE3)
            await upload.write(1, b"k" * 100)
            await upload.suspend()  # 100 bytes acknowledged (the tail), then the limits
            kept = await left(pg)
            await store.enforce_quota(CLIENT, KEEP)  # and again, as the next turn would
            return kept | await left(pg)

    assert asyncio.run(scenario()) == {(CLIENT, KEEP)}
    assert dropped == []


def test_the_limit_on_uploads_drops_down_to_it_and_no_further(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Four uploads against a limit of two: the two oldest go, one at a time, and the
    dropping stops the moment the count is at the limit."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> set[Any]:
        await seed(
            pg,
            (CLIENT, b"a" * 16, 1, 1),
            (CLIENT, b"b" * 16, 2, 2),
            (CLIENT, b"c" * 16, 3, 3),
            (CLIENT, KEEP, 4, 4),
        )
        async with limited(seaweedfs, bucket, pg, dropped) as store:
            store.quota = PartialQuota(uploads_per_client=2)
            await store.enforce_quota(CLIENT, KEEP)
        return await left(pg)

    assert asyncio.run(scenario()) == {(CLIENT, b"c" * 16), (CLIENT, KEEP)}
    assert dropped == [("client_uploads", 1), ("client_uploads", 2)]


def test_the_limit_on_bytes_drops_down_to_it_and_says_bytes_at_a_full_count(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """300 bytes against 200, four uploads against four: the oldest goes, which brings
    the bytes to the limit exactly, and nothing more. The count is at its limit, not
    over it: the reason is the bytes."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> set[Any]:
        await seed(
            pg,
            (CLIENT, b"a" * 16, 100, 1),
            (CLIENT, b"b" * 16, 100, 2),
            (CLIENT, b"c" * 16, 100, 3),
            (CLIENT, KEEP, 0, 4),
        )
        async with limited(seaweedfs, bucket, pg, dropped) as store:
            store.quota = PartialQuota(uploads_per_client=4, bytes_per_client=200)
            await store.enforce_quota(CLIENT, KEEP)
        return await left(pg)

    with structlog.testing.capture_logs() as logs:
        after = asyncio.run(scenario())
    assert after == {(CLIENT, b"b" * 16), (CLIENT, b"c" * 16), (CLIENT, KEEP)}
    assert dropped == [("client_bytes", 100)]
    assert [e["reason"] for e in events(logs, "partial_upload_dropped")] == ["client_bytes"]


def test_the_limits_go_on_past_uploads_being_written_and_leave_no_lock(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The oldest uploads are being written, one on another replica, one here: skipped,
    and the next one, idle, is dropped (its digest state was never kept here). The
    only locks left are the two writers'."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> tuple[set[Any], int]:
        async with (
            limited(seaweedfs, bucket, pg, dropped) as here,
            replica(seaweedfs, bucket, pg) as there,
        ):
            elsewhere = await there.open(CLIENT, b"w" * 16, "w.bin", 1000, BLAKE3)
            writing = await here.open(CLIENT, b"h" * 16, "h.bin", 1000, BLAKE3)
            await seed(pg, (CLIENT, b"a" * 16, 10, 3), (CLIENT, KEEP, 0, 4))
            for upload_id, updated_at in ((b"w" * 16, 1), (b"h" * 16, 2)):
                connection = await connect(pg)
                try:
                    await connection.execute(
                        "UPDATE uploads_v4 SET updated_at = $2 WHERE upload_id = $1",
                        upload_id,
                        updated_at,
                    )
                finally:
                    await connection.close()
            here.quota = PartialQuota(uploads_per_client=2)
            await here.enforce_quota(CLIENT, KEEP)
            found, locks = await left(pg), await advisory_locks(pg)
            await elsewhere.discard()
            await writing.discard()
            return found, locks

    found, locks = asyncio.run(scenario())
    assert found == {(CLIENT, b"w" * 16), (CLIENT, b"h" * 16), (CLIENT, KEEP)}
    assert locks == 2
    assert dropped == [("client_uploads", 10)]


def test_the_servers_limit_applies_after_the_clients_has_dropped_some(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """CLIENT over its own limit drops its oldest; then the server, still over its
    limit, drops the oldest of all (another client's)."""
    dropped: list[tuple[str, int]] = []

    async def scenario() -> set[Any]:
        await seed(pg, (OTHER, b"o" * 16, 5, 1), (CLIENT, b"a" * 16, 7, 2), (CLIENT, KEEP, 0, 3))
        async with limited(seaweedfs, bucket, pg, dropped) as store:
            store.quota = PartialQuota(uploads_per_client=1, uploads=1)
            await store.enforce_quota(CLIENT, KEEP)
        return await left(pg)

    assert asyncio.run(scenario()) == {(CLIENT, KEEP)}
    assert dropped == [("client_uploads", 7), ("server_uploads", 5)]


def test_an_upload_opened_again_and_again_here_cuts_each_holder_in_turn(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """A client that reconnects to this replica while its earlier connection is not
    yet seen gone: each open asks the connection before it to let go and waits for it,
    the third as the second. A connection lets go as connection_v4's does: cut, it
    suspends only later (here: after a PostgreSQL round trip). Each open waits on its
    own upload's key for a notice not yet given, and nothing waits once it is open."""

    async def scenario() -> None:
        store: SharedUnfinishedUploads
        async with replica(seaweedfs, bucket, pg, let_go_timeout=120) as store:
            assert store._pool is not None
            pool = store._pool
            upload = await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
            for generation in (2, 3):
                ends: list[asyncio.Task[None]] = []

                async def suspend_later(held: Any) -> None:
                    await pool.fetchval("SELECT 1")
                    await held.suspend()

                def let_go(held: Any = upload, ends: list[asyncio.Task[None]] = ends) -> None:
                    # asked (in the open): it waits on this upload's notice, not yet given
                    waiting = {key: e.is_set() for key, e in store._released.items()}
                    assert waiting == {held._key: False}
                    ends.append(asyncio.ensure_future(suspend_later(held)))

                upload.on_taken = let_go
                upload = await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
                assert upload.generation == generation and len(ends) == 1
                await ends[0]
                assert store._held == {upload._key: upload} and store._released == {}
            await upload.discard()

    asyncio.run(scenario())


def test_an_open_refused_as_busy_says_exactly_why(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Both refusals (another open of it under way; a connection here that does not let
    go) carry the message the other stores give, which the connection logs."""

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg, let_go_timeout=0.05) as store:
            answers = await asyncio.gather(
                store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3),
                store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3),
                return_exceptions=True,
            )
            (busy,) = [a for a in answers if isinstance(a, UploadBusy)]
            with pytest.raises(UploadBusy, match=BUSY):
                raise busy
            with pytest.raises(UploadBusy, match=BUSY):  # the first never lets go
                await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
            (opened,) = [a for a in answers if not isinstance(a, BaseException)]
            await opened.discard()

    asyncio.run(scenario())


def test_two_opens_at_once_of_an_upload_held_here_one_is_busy(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Both ask the holder to let go and wait for it; once it has, one opens the upload
    and the other finds it opening: busy, not a second writer of the same upload."""

    async def scenario() -> int:
        async with replica(seaweedfs, bucket, pg, let_go_timeout=120) as store:
            assert store._pool is not None
            pool = store._pool
            held = await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
            ends: list[asyncio.Task[None]] = []

            async def suspend_later() -> None:
                await pool.fetchval("SELECT 1")
                await held.suspend()

            def let_go() -> None:  # asked by both: a connection is cut once
                if not ends:
                    ends.append(asyncio.ensure_future(suspend_later()))

            held.on_taken = let_go
            answers = await asyncio.gather(
                store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3),
                store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3),
                return_exceptions=True,
            )
            await asyncio.gather(*ends)
            (busy,) = [a for a in answers if isinstance(a, UploadBusy)]
            with pytest.raises(UploadBusy, match=BUSY):
                raise busy
            (opened,) = [a for a in answers if not isinstance(a, BaseException)]
            assert opened.generation == 2 and store._held == {opened._key: opened}
            assert store._opening == set() and store._released == {}
            locks = await advisory_locks(pg)
            await opened.discard()
            return locks

    assert asyncio.run(scenario()) == 1
