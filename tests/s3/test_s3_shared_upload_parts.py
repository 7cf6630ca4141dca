"""One shared unfinished upload being written (s3_shared_upload.py), in-process against
the real PostgreSQL and SeaweedFS, written against the mutants that survived the sixth
mutation round (docs/TESTING.md): once S3 has the whole file, a record that cannot be
deleted (PostgreSQL unreachable, or the pool closed) does not fail the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import SharedUnfinishedUploads
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    advisory_locks,
    file_key,
    record,
    replica,
    staged,
)
from tests.support.seaweedfs import SeaweedFS

UPLOAD = b"w" * 16


class _AfterCompletion:
    """The real S3 API, which runs ``then`` once a multipart upload is complete (the
    moment the file is the client's whole and the record is still there)."""

    def __init__(self, api: Any, then: Callable[[], Awaitable[None]]) -> None:
        self.api = api
        self.then = then

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def complete_multipart_upload(self, **arguments: Any) -> Any:
        answer = await self.api.complete_multipart_upload(**arguments)
        await self.then()
        return answer


def _commit_with_records_lost(
    seaweedfs: SeaweedFS,
    bucket: str,
    pg: PgSettings,
    lose: Callable[[SharedUnfinishedUploads], Awaitable[None]],
) -> str:
    """A small file written and committed, its records made unusable by ``lose`` as
    soon as S3 has the file: the commit answers the file's place all the same, its
    staged objects go and its lock is freed; the record is left for the expiry sweep."""
    data = b"w" * 1000

    async def scenario() -> str:
        async with replica(seaweedfs, bucket, pg) as store:
            upload = await store.open(CLIENT, UPLOAD, "w.bin", len(data), BLAKE3)
            await upload.write(1, data)
            store.client.api = _AfterCompletion(store.client.api, lambda: lose(store))
            url = await upload.commit(CLIENT, "w.bin")
            assert await advisory_locks(pg) == 0 and upload.buffer is None
            return url

    url = asyncio.run(scenario())
    assert seaweedfs.object_bytes(bucket, file_key(CLIENT, "w.bin")) == data
    assert staged(seaweedfs, bucket) == {}
    row = asyncio.run(record(pg))
    assert (row["file_name"], row["generation"], row["durable_offset"]) == ("w.bin", 1, 1000)
    return url


def test_a_commit_whose_database_becomes_unreachable_still_answers(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, tmp_path: Path
) -> None:
    """PostgreSQL's address gone (a failover, a restart on another socket): the record's
    DELETE fails to connect, an OS error, as the pool's connections are replaced."""

    async def unreachable(store: SharedUnfinishedUploads) -> None:
        assert store._pool is not None
        gone = tmp_path / "no-postgres-here"
        gone.mkdir()
        store._pool.set_connect_args(
            host=str(gone), port=pg.port, database=pg.database, user=pg.user, timeout=10
        )
        await store._pool.expire_connections()

    url = _commit_with_records_lost(seaweedfs, bucket, pg, unreachable)
    assert url == f"s3://{bucket}/{file_key(CLIENT, 'w.bin')}"


def test_a_commit_whose_record_pool_is_closed_still_answers(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The pool closed under the commit (the replica stopping): the record's DELETE
    fails as asyncpg's interface error, not PostgreSQL's."""

    async def closed(store: SharedUnfinishedUploads) -> None:
        assert store._pool is not None
        await store._pool.close()

    url = _commit_with_records_lost(seaweedfs, bucket, pg, closed)
    assert url == f"s3://{bucket}/{file_key(CLIENT, 'w.bin')}"
