"""The registry's PostgreSQL schema and its versioned migrations.

``MIGRATIONS`` only ever appends. Every replica calls ``migrate`` when it starts; the
first to take the advisory lock brings the schema forward, one script per transaction
with its version row (a crash leaves it at some version, never between two), and the
others wait on the lock, then find nothing left to do. A session advisory lock is
released the moment its connection drops, so a replica killed while migrating never
blocks the others.

The tables mirror SQLite's (``sqlite_schema.py``); names are snake_case, PostgreSQL's
convention. The uniqueness the protocol promises (a name belongs to one client, a
version-4 static key to one name) is a constraint here, so that two replicas registering
the same name at once cannot both succeed: the second INSERT fails, and the constraint's
name says which promise it broke (``NAME_CONSTRAINTS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

#: pg_advisory_lock's key for migrations: "eft" and 31 (the issue), any fixed bigint.
MIGRATION_LOCK = 0x6566_7400_0031
#: Seconds a replica waits for another's migrations, and a migration may run: far
#: beyond the registry's usual statement timeout, which would cut a long one short.
MIGRATION_TIMEOUT = 600.0

#: Unique constraints a registration can break when another replica got there first.
NAME_CONSTRAINTS = frozenset(
    {"clients_name_unique", "clients_v4_name_unique", "clients_v4_static_key_unique"}
)

MIGRATIONS: tuple[str, ...] = (
    # 1: both versions' clients and files, as SQLite has them at its version 4.
    """
    CREATE TABLE clients (
        id bytea PRIMARY KEY CHECK (length(id) = 16),
        name text NOT NULL CONSTRAINT clients_name_unique UNIQUE,
        public_key bytea,
        last_seen double precision NOT NULL,
        -- Always NULL: the AES key a reconnect issues lives in that connection only (it
        -- would decrypt recorded sessions, docs/SECURITY.md EFT-18). Kept for the
        -- original design's schema.
        aes_key bytea
    );
    CREATE TABLE files (
        client_id bytea NOT NULL REFERENCES clients (id),
        file_name text NOT NULL,
        path_name text NOT NULL,
        size bigint NOT NULL,
        cksum bigint NOT NULL,
        verified boolean NOT NULL,
        PRIMARY KEY (client_id, file_name)
    );
    CREATE TABLE clients_v4 (
        client_id bytea PRIMARY KEY CHECK (length(client_id) = 16),
        name text NOT NULL CONSTRAINT clients_v4_name_unique UNIQUE,
        static_key bytea NOT NULL CONSTRAINT clients_v4_static_key_unique UNIQUE
            CHECK (length(static_key) = 32),
        registered_at double precision NOT NULL,
        last_seen double precision NOT NULL
    );
    CREATE TABLE files_v4 (
        client_id bytea NOT NULL REFERENCES clients_v4 (client_id),
        file_name text NOT NULL,
        path_name text NOT NULL,
        size bigint NOT NULL,
        digest bytea NOT NULL,
        digest_algorithm text NOT NULL,
        PRIMARY KEY (client_id, file_name)
    );
    """,
    # 2: unfinished version-4 uploads, for resume on any replica (the S3 store writes
    # them; docs/SCALING.md): the object store's multipart upload, the offset every
    # replica may resume from, and the parts already in the store. Which replica writes
    # an upload is a session advisory lock on (client_id, upload_id), not a column: it
    # must vanish with the holder's connection.
    """
    CREATE TABLE uploads_v4 (
        client_id bytea NOT NULL REFERENCES clients_v4 (client_id),
        upload_id bytea NOT NULL,
        file_name text NOT NULL,
        size bigint NOT NULL CHECK (size >= 0),
        store_upload_id text NOT NULL,
        durable_offset bigint NOT NULL DEFAULT 0 CHECK (durable_offset >= 0),
        updated_at double precision NOT NULL,
        PRIMARY KEY (client_id, upload_id)
    );
    CREATE TABLE upload_parts_v4 (
        client_id bytea NOT NULL,
        upload_id bytea NOT NULL,
        part_number integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
        size bigint NOT NULL CHECK (size > 0),
        etag text NOT NULL,
        PRIMARY KEY (client_id, upload_id, part_number),
        FOREIGN KEY (client_id, upload_id) REFERENCES uploads_v4 ON DELETE CASCADE
    );
    """,
    # 3: what a replica needs to take an upload over (s3_shared_uploads.py): the file's
    # key, part size and digest algorithm, the tail's object, each part's readable copy
    # (to rebuild the digest), and the fencing token bumped by whoever takes it.
    """
    ALTER TABLE uploads_v4
        ADD COLUMN object_key text,
        ADD COLUMN part_size bigint CHECK (part_size > 0),
        ADD COLUMN digest_algorithm integer,
        ADD COLUMN generation bigint NOT NULL DEFAULT 1,
        ADD COLUMN tail_key text,
        ADD COLUMN tail_size bigint NOT NULL DEFAULT 0 CHECK (tail_size >= 0);
    ALTER TABLE upload_parts_v4 ADD COLUMN source_key text;
    """,
)


class SchemaTooNew(RuntimeError):
    def __init__(self, version: int) -> None:
        super().__init__(
            f"the database is at schema version {version}, newer than this server "
            f"({len(MIGRATIONS)}): upgrade the server"
        )
        self.version = version


async def migrate(connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> int:
    """Bring the schema up to date under the migration lock; returns how many
    migrations this call applied (0 when another replica had done them)."""
    await connection.execute(
        "SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=MIGRATION_TIMEOUT
    )
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS eft_schema ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version: int = await connection.fetchval("SELECT coalesce(max(version), 0) FROM eft_schema")
        if version > len(MIGRATIONS):
            raise SchemaTooNew(version)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with connection.transaction():
                await connection.execute(script, timeout=MIGRATION_TIMEOUT)
                await connection.execute("INSERT INTO eft_schema (version) VALUES ($1)", number)
        return len(MIGRATIONS) - version
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
