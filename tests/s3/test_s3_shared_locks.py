"""The shared uploads' connections to PostgreSQL and their locks (s3_shared_uploads.py:
``connect``, ``close``, the lock connection, ``_acquire``), in-process on the real
PostgreSQL and SeaweedFS, written against the mutants that survived the module's
selection (docs/TESTING.md, "Sixth round"): where a replica connects, what it opens
before it needs it, what closing it gives back even when PostgreSQL hangs, and an
upload still held after its holder's session was ended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import structlog

from eft_server import s3_shared_uploads
from eft_server.partial_uploads import UploadBusy
from eft_server.pg_connect import PgSettings
from eft_server.s3_shared_uploads import POOL_SIZE, lock_key
from eft_server.storage import StorageError
from tests.s3.shared_support import BLAKE3, CLIENT, connect, events, replica, rows
from tests.support.postgres import PostgresCluster, SharedCluster
from tests.support.seaweedfs import SeaweedFS

UPLOAD = b"k" * 16
#: A loopback address of its own: a connection that misses the relay's port (the
#: default 5432, say) finds nothing listening there.
RELAY_HOST = "127.0.0.2"


class _Relay:
    """PostgreSQL over TCP on RELAY_HOST, at a port of the kernel's choosing (the test
    cluster listens on a unix socket only, named after the default port 5432): each
    connection relayed to the socket. ``freeze`` holds every byte from then on and
    closes nothing, as a hung PostgreSQL (or a network gone silent) does."""

    def __init__(self, pg: PgSettings) -> None:
        self.socket_path = f"{pg.host}/.s.PGSQL.{pg.port}"
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, RELAY_HOST, 0)
        return int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        self._flowing.clear()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(1 << 16):
                await self._flowing.wait()  # frozen: held here for good
                sink.write(data)
                await sink.drain()
            sink.close()  # one side ended: so does the other


@contextlib.asynccontextmanager
async def relayed(pg: PgSettings) -> AsyncIterator[tuple[_Relay, PgSettings]]:
    """The relay, and the settings that reach PostgreSQL through it."""
    relay = _Relay(pg)
    port = await relay.start()
    try:
        yield relay, replace(pg, host=RELAY_HOST, port=port)
    finally:
        await relay.close()


def test_a_replica_connects_where_its_settings_say(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Host and port as given, for the lock connection and the pool both: here a port
    that is not PostgreSQL's default, on an address where nothing else listens."""

    async def scenario() -> int:
        async with (
            relayed(pg) as (relay, through),
            replica(seaweedfs, bucket, through) as store,
        ):
            upload = await store.open(CLIENT, UPLOAD, "r.bin", 100, BLAKE3)  # both used
            await upload.discard()
            return relay.connections

    assert asyncio.run(scenario()) >= 2  # the lock connection and the pool's


def test_a_replica_opens_only_its_lock_connection_before_it_needs_more(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """Connected and idle, a replica has one session on the cluster (the lock
    connection): the pool opens a connection only for a statement, so idle replicas
    cost the cluster one connection each out of its ``max_connections``."""

    async def scenario() -> list[dict[str, Any]]:
        async with replica(seaweedfs, bucket, pg) as store:
            assert store._locks is not None
            sessions = await rows(
                pg,
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                pg.database,
            )
            assert sessions == [{"pid": store._locks.get_server_pid()}]
            return sessions

    asyncio.run(scenario())


def test_closing_a_replica_gives_back_its_locks_and_closes_its_pool(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """A replica stopping with an upload still held (its connection not yet ended):
    the lock connection is closed, so another session gets the upload's lock (waited
    for: the session's end is PostgreSQL's to notice), and the pool is closed."""
    key = lock_key(CLIENT, UPLOAD)

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg) as store:
            await store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3)
            locks, pool = store._locks, store._pool
            assert locks is not None and pool is not None
            await store.close()
            assert locks.is_closed() and pool.is_closing()
        other = await connect(pg)
        try:
            # the bound of a failure only
            await asyncio.wait_for(other.fetchval("SELECT pg_advisory_lock($1)", key), 60)
        finally:
            await other.close()

    asyncio.run(scenario())


def test_a_replica_whose_postgresql_hangs_fails_its_opens_and_still_closes(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """PostgreSQL hung (or the network to it) after the replica connected: an open's
    lock statement fails at the lock connection's command timeout (10 s) as a storage
    error, instead of holding the client's open for ever; closing waits a bounded time
    for each of the lock connection and the pool (2 s), then drops them and raises
    nothing, so a replica can always stop."""

    async def scenario() -> None:
        async with (
            relayed(pg) as (relay, through),
            replica(seaweedfs, bucket, through) as store,
        ):
            upload = await store.open(CLIENT, UPLOAD, "h.bin", 100, BLAKE3)
            await upload.discard()  # the pool keeps its connection, idle
            locks, pool = store._locks, store._pool
            assert locks is not None and pool is not None
            relay.freeze()
            opening = store.open(CLIENT, UPLOAD, "h.bin", 100, BLAKE3)
            with pytest.raises(StorageError, match="the upload records are unreachable"):
                await asyncio.wait_for(opening, 60)  # the bound of a failure only
            await store.close()
            assert locks.is_closed() and pool.is_closing()

    asyncio.run(scenario())


def test_a_replica_whose_postgresql_hangs_at_connecting_gives_up(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """PostgreSQL accepting connections but never answering (hung): the new lock
    connection an open needs (the old one ended) and the pool's first connection (a
    sweep's) each give up at their connect timeout (10 s) as a storage error, instead
    of holding the client's open or the sweep for ever."""

    async def scenario() -> list[BaseException | object]:
        async with (
            relayed(pg) as (relay, through),
            replica(seaweedfs, bucket, through) as store,
        ):
            locks = store._locks
            assert locks is not None
            ended = asyncio.Event()
            locks.add_termination_listener(lambda _: ended.set())  # after the store's own
            admin = await connect(pg)
            try:
                await admin.fetchval(
                    "SELECT pg_terminate_backend($1, 5000)", locks.get_server_pid()
                )
            finally:
                await admin.close()
            await asyncio.wait_for(ended.wait(), 60)  # the bound of a failure only
            assert store._locks is None
            relay.freeze()
            both = asyncio.gather(
                store.open(CLIENT, UPLOAD, "c.bin", 100, BLAKE3),
                store.remove_expired(0),  # the pool's first statement
                return_exceptions=True,
            )
            return list(await asyncio.wait_for(both, 60))  # the bound of a failure only

    answers = asyncio.run(scenario())
    assert [type(answer) for answer in answers] == [StorageError, StorageError]
    assert all("the upload records are unreachable" in str(answer) for answer in answers)


async def _waiting_for_lock(watcher: asyncpg.Connection, pid: int) -> bool:
    found = await watcher.fetchval(
        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted",
        pid,
    )
    return bool(found)


def test_an_upload_taken_by_another_session_meanwhile_is_busy(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings
) -> None:
    """The holder does not let go (a session that never listens), so its session is
    ended; but a session queued for the same lock is granted it as the holder's ends,
    before the taker tries again: the upload is busy, said so, and nothing is left
    behind (no record, no waiter, no lock of the taker's)."""
    key = lock_key(CLIENT, UPLOAD)

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        holder, queued, watcher = await connect(pg), await connect(pg), await connect(pg)
        try:
            await holder.fetchval("SELECT pg_advisory_lock($1)", key)
            waiting = asyncio.ensure_future(queued.fetchval("SELECT pg_advisory_lock($1)", key))
            while not await _waiting_for_lock(watcher, queued.get_server_pid()):
                pass  # PostgreSQL has queued it behind the holder: a round trip each
            async with replica(seaweedfs, bucket, pg, let_go_timeout=0.05) as store:
                with pytest.raises(UploadBusy) as busy:
                    await store.open(CLIENT, UPLOAD, "b.bin", 100, BLAKE3)
                assert str(busy.value) == "this upload is still held by another replica"
                assert store._released == {} and store._opening == set()
                assert store._held == {}
                await waiting  # granted when the holder's session ended
                locks = await rows(
                    pg,
                    "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
                    pg.database,
                )
                assert locks == [{"pid": queued.get_server_pid()}]
            return holder.get_server_pid(), await rows(pg, "SELECT * FROM uploads_v4")
        finally:
            for connection in (holder, queued, watcher):
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await connection.close()

    with structlog.testing.capture_logs() as logs:
        holder_pid, records = asyncio.run(scenario())
    assert records == []
    assert events(logs, "s3_upload_holder_terminated") == [
        {
            "event": "s3_upload_holder_terminated",
            "key": key,
            "pid": holder_pid,
            "log_level": "warning",
        }
    ]


def test_a_replicas_pool_is_bounded_and_so_are_its_statements(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's pool opens at most POOL_SIZE connections (every replica shares the
    cluster's ``max_connections``), and a pooled statement on a hung PostgreSQL fails at
    PG_TIMEOUT as a storage error instead of holding the sweep for ever. PG_TIMEOUT is
    3 s here, so that the test ends soon: its only statement before the freeze is a
    ``SELECT 1``."""
    monkeypatch.setattr(s3_shared_uploads, "PG_TIMEOUT", 3.0)

    async def scenario() -> None:
        async with (
            relayed(pg) as (relay, through),
            replica(seaweedfs, bucket, through) as store,
        ):
            pool = store._pool
            assert pool is not None and pool.get_max_size() == POOL_SIZE
            assert await pool.fetchval("SELECT 1") == 1  # a pooled connection, left idle
            relay.freeze()
            with pytest.raises(StorageError, match="the upload records are unreachable"):
                await asyncio.wait_for(store.remove_expired(3600), 60)  # a failure's bound

    asyncio.run(scenario())


def test_a_taker_ends_its_own_databases_holder_only(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, postgres: PostgresCluster
) -> None:
    """Advisory locks belong to a database: a session of another database on the same
    PostgreSQL that holds the same 64-bit key is not the upload's holder. A replica
    taking over an upload whose holder never lets go ends that holder's session, and
    leaves the other database's alone."""
    key = lock_key(CLIENT, UPLOAD)
    elsewhere = postgres.new_database("eft_elsewhere")

    async def scenario() -> None:
        neighbour = await postgres.connect(elsewhere)
        holder = await connect(pg)
        try:
            await neighbour.execute("SELECT pg_advisory_lock($1)", key)
            await holder.execute("SELECT pg_advisory_lock($1)", key)
            async with replica(seaweedfs, bucket, pg, let_go_timeout=0.1) as store:
                upload = await store.open(CLIENT, UPLOAD, "t.bin", 100, BLAKE3)
                await upload.discard()
            assert holder.is_closed() or not await _alive(holder)
            assert await neighbour.fetchval("SELECT 1") == 1  # still there
        finally:
            await neighbour.close()
            await holder.close()

    try:
        asyncio.run(scenario())
    finally:
        if isinstance(postgres, SharedCluster):  # else the session's cluster goes whole
            postgres.drop_database(elsewhere)


async def _alive(connection: asyncpg.Connection) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True
