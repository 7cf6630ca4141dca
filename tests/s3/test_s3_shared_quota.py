"""The shared uploads' limits and opening (s3_shared_uploads.py: ``enforce_quota``,
``_enforce``, ``open``) on the real PostgreSQL and SeaweedFS, in-process, written against
the mutants that survived the module's selection (docs/TESTING.md, "Sixth round …
open and quota"): which uploads each limit counts, where the dropping stops, what it
skips and goes on past, and an upload opened again and again on one replica.

Most records here are written by the test itself, each with its own ``updated_at``, so
the order the limits drop them in is the test's, and ``enforce_quota`` is called as an
upload's open or suspend calls it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eft_server.partial_uploads import UploadBusy
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import SharedUnfinishedUploads
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    advisory_locks,
    replica,
)
from tests.s3.test_s3_shared_uploads_more import pg, pg_database, pg_url, postgres
from tests.support.seaweedfs import SeaweedFS

__all__ = ["pg", "pg_database", "pg_url", "postgres"]  # the fixtures

BUSY = r"^this upload is still open on another connection$"
KEEP = b"k" * 16  # the upload just opened or suspended: spared


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
            waited: list[dict[int, bool]] = []
            upload = await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
            for generation in (2, 3):
                ends: list[asyncio.Task[None]] = []

                async def suspend_later(held: Any) -> None:
                    await pool.fetchval("SELECT 1")
                    await held.suspend()

                def let_go(held: Any = upload, ends: list[asyncio.Task[None]] = ends) -> None:
                    waited.append({key: e.is_set() for key, e in store._released.items()})
                    ends.append(asyncio.ensure_future(suspend_later(held)))

                upload.on_taken = let_go
                upload = await store.open(CLIENT, KEEP, "k.bin", 100, BLAKE3)
                assert upload.generation == generation and len(ends) == 1
                await ends[0]
                assert store._held == {upload._key: upload} and store._released == {}
            assert waited == [{upload._key: False}, {upload._key: False}]
            await upload.discard()

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
