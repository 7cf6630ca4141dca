"""What the in-process tests of the uploads shared by replicas (s3_shared_*.py) have in
common: a migrated database with two clients, a "replica" (the store on its own S3
client and PostgreSQL connections), and looks at the records, the locks and the staged
part objects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg

from eft_protocol.v4.file_digest import DigestAlgorithm, hasher_for
from eft_server.pg_connect import PgSettings, parse_registry_url
from eft_server.pg_schema import migrate
from eft_server.s3_settings import parse_store_url, s3_settings
from eft_server.s3_shared_uploads import SharedUnfinishedUploads
from eft_server.s3_store import S3Client
from tests.s3.conftest import PREFIX
from tests.support.postgres import PostgresCluster
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20
CLIENT = bytes(range(16))
OTHER = bytes(range(16, 32))
BLAKE3 = DigestAlgorithm.BLAKE3
STAGING = f"{PREFIX}/v4/unfinished/"


def pg_settings(postgres: PostgresCluster, pg_url: str) -> PgSettings:
    """The test's database, migrated, with CLIENT and OTHER registered."""
    pg = parse_registry_url(pg_url, postgres.server_env())

    async def prepare() -> None:
        connection = await connect(pg)
        try:
            await migrate(connection)
            for client_id, name in ((CLIENT, "fen"), (OTHER, "moor")):
                await connection.execute(
                    "INSERT INTO clients_v4 VALUES ($1, $2, $3, $4, $4)",
                    client_id,
                    name,
                    client_id * 2,
                    time.time(),
                )
        finally:
            await connection.close()

    asyncio.run(prepare())
    return pg


async def connect(pg: PgSettings) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=pg.host, port=pg.port, database=pg.database, user=pg.user, password=pg.password
    )


@contextlib.asynccontextmanager
async def replica(
    seaweedfs: SeaweedFS,
    bucket: str,
    pg: PgSettings,
    endpoint: str | None = None,
    **options: Any,
) -> AsyncIterator[SharedUnfinishedUploads]:
    """A replica's shared uploads on the real PostgreSQL and SeaweedFS; ``endpoint``
    puts something (a relay) between its S3 client and SeaweedFS."""
    env = seaweedfs.server_env()
    if endpoint is not None:
        env["EFT_S3_ENDPOINT"] = endpoint
    client = S3Client(s3_settings(parse_store_url(f"s3://{bucket}/{PREFIX}"), env))
    await client.open()
    store = SharedUnfinishedUploads(client, pg, **options)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()
        await client.close()


async def rows(pg: PgSettings, sql: str, *args: Any) -> list[dict[str, Any]]:
    """A query's rows on a connection of the test's own (not the store's)."""
    connection = await connect(pg)
    try:
        return [dict(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


async def record(pg: PgSettings) -> dict[str, Any]:
    """The one upload record there is."""
    (row,) = await rows(pg, "SELECT * FROM uploads_v4")
    return row


async def parts(pg: PgSettings) -> list[dict[str, Any]]:
    return await rows(
        pg,
        "SELECT part_number, size, etag, source_key FROM upload_parts_v4 ORDER BY part_number",
    )


async def advisory_locks(pg: PgSettings) -> int:
    """Advisory locks granted in the test's database, whoever holds them."""
    (row,) = await rows(
        pg,
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
        pg.database,
    )
    return int(row["n"])


def staged(seaweedfs: SeaweedFS, bucket: str) -> dict[str, int]:
    """The staged part and tail objects: key (less the staging prefix) -> size."""
    answer = seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix=STAGING)
    return {item["Key"][len(STAGING) :]: item["Size"] for item in answer.get("Contents", [])}


def digest(data: bytes, algorithm: int = BLAKE3) -> bytes:
    hasher = hasher_for(algorithm)
    hasher.update(data)
    return hasher.digest()


def file_key(client_id: bytes, name: str) -> str:
    return f"{PREFIX}/v4/files/{client_id.hex()}/{name}"


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The captured log entries of one event."""
    return [entry for entry in logs if entry["event"] == name]
