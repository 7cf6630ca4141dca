"""The registry in PostgreSQL, shared by every replica of the server (docs/SCALING.md).

The sessions ask the registry synchronously and must see a change at once; replicas
must see each other's. So this engine keeps no cache of the tables (another replica may
change any row at any time): a read looks in this replica's changes not yet written
(pending, as SQLite's engine does), then asks the database. asyncpg runs on a thread of
its own with its own event loop, so the server's loop never runs database I/O, and a
read waits for its answer (a point lookup by primary or unique key: a fraction of a
millisecond on a local network; bounded by ``timeout``). The driver-side hook that
would load those rows before the session runs is the step that removes that wait.

Changes are seen at once and sent by ``flush``, one transaction per flush, in the
order of the flushes (one writer at a time), and its future completes once they are
committed or with the error that refused them. A registration whose name (or version-4
static key) another replica committed first fails with ``NameTaken``: the database
decides which of two replicas wins, and the driver answers the loser's client as for any
taken name (1601 in version 3, the refusal in version 4) before anything was told.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Hashable, Iterator
from typing import Any, TypeVar

import asyncpg

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_protocol.v4.file_digest import NAME as DIGEST_NAME

from .pg_connect import PgSettings
from .pg_schema import MIGRATION_TIMEOUT, MIGRATIONS, NAME_CONSTRAINTS, SchemaTooNew, migrate
from .registry_errors import NameTaken, RegistryError, RegistryUnreachable

DIGEST_ALGORITHM = DIGEST_NAME.lower()
#: Seconds a read or a connection may take before the caller is told the registry failed.
DEFAULT_TIMEOUT = 10.0
#: Connections per replica: the writer and the readers (reads come one at a time from the
#: event loop; eft-admin's listings stream on one of their own).
POOL_SIZE = 4
T = TypeVar("T")
_Write = tuple[str, tuple[object, ...]]

_CLIENT = "SELECT id, name, last_seen, public_key, aes_key FROM clients"
_CLIENT_V4 = "SELECT client_id, name, static_key, registered_at, last_seen FROM clients_v4"
_FILE = "SELECT client_id, file_name, path_name, size, cksum, verified FROM files"
_FILE_V4 = "SELECT client_id, file_name, path_name, size, digest, digest_algorithm FROM files_v4"
_ID, _NAME, _KEY4, _NAME4, _ID4, _F, _F4 = "id", "name", "key4", "name4", "id4", "f", "f4"


def _client(row: Any) -> ClientRecord:
    return ClientRecord(row[0], row[1], row[2], row[3], row[4])


def _client_v4(row: Any) -> ClientRecordV4:
    return ClientRecordV4(row[0], row[1], row[2], row[3], row[4])


def _file(row: Any) -> FileRecord:
    return FileRecord(row[0], row[1], row[2], row[3], row[4], row[5])


def _file_v4(row: Any) -> FileRecordV4:
    return FileRecordV4(row[0], row[1], row[2], row[3], row[4], row[5])


class PgRegistry:
    """Implements ``registry.ServerRegistry`` on a PostgreSQL database."""

    shared = True  # other replicas write the same tables: local files are not the truth

    def __init__(self, settings: PgSettings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.settings = settings
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="eft-postgresql", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()  # pending and count: the server's loop and ours
        self._pending: dict[Hashable, tuple[object, _Segment]] = {}
        self._segment = _Segment()
        self._writing = asyncio.Lock()  # used on our loop only: flushes commit in order
        self._memo: dict[Hashable, Any] | None = None  # see _step_memo
        self.database_reads = 0  # lookups that went to the database (tests, benchmarks)
        try:
            opened = self._call(self._open(), timeout=MIGRATION_TIMEOUT + self.timeout)
            self._pool, self.migrations_applied, self._client_count = opened
        except BaseException:
            self._stop_loop()
            raise
        self.schema_version = len(MIGRATIONS)

    # --- our event loop -------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run on our loop and wait: the answer, or RegistryUnreachable."""
        seconds = self.timeout if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(seconds)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise RegistryUnreachable(
                f"no answer from {self.settings.where} within {seconds:g} s"
            ) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RegistryUnreachable(f"{self.settings.where}: {exc}") from exc

    async def _open(self) -> tuple[asyncpg.Pool, int, int]:
        settings = self.settings
        pool = await asyncpg.create_pool(
            host=settings.host,
            port=settings.port,
            database=settings.database,
            user=settings.user,  # None: asyncpg's defaults (PGUSER, the login name)
            password=settings.password,  # None: PGPASSWORD, then the password file
            min_size=0,  # no floor to restore while the database is away (log noise)
            max_size=POOL_SIZE,
            timeout=self.timeout,
            command_timeout=self.timeout,
        )
        try:
            async with pool.acquire() as connection:
                applied = await migrate(connection)
                count = await connection.fetchval(
                    "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM clients_v4)"
                )
        except BaseException:
            await pool.close()
            raise
        return pool, applied, int(count)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # --- reads: this replica's pending changes, then the database ---------------------

    def _lookup(
        self, key: Hashable, sql: str, args: tuple[object, ...], build: Callable[[Any], T]
    ) -> T | None:
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            return pending[0]  # type: ignore[return-value]
        memo = self._step_memo()
        if memo is not None and key in memo:
            return memo[key]  # type: ignore[no-any-return]
        row = self._call(self._pool.fetchrow(sql, *args))
        self.database_reads += 1
        value = None if row is None else build(row)
        if memo is not None:
            memo[key] = value
        return value

    def _step_memo(self) -> dict[Hashable, Any] | None:
        """Rows read during the current step of the server's event loop (one request
        handled synchronously by a session), forgotten at the next step. A session reads
        a row, then saves it, and the save reads it again: one round trip instead of
        two, and the session's decision and its write see the same row. Reads from any
        other thread (eft-admin, start-up, tests) are not memoized."""
        if self._memo is not None:
            return self._memo
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._memo = {}
        loop.call_soon(self._forget_step)
        return self._memo

    def _forget_step(self) -> None:
        self._memo = None

    def client_by_id(self, client_id: bytes) -> ClientRecord | None:
        return self._lookup((_ID, client_id), f"{_CLIENT} WHERE id = $1", (client_id,), _client)

    def client_by_name(self, name: str) -> ClientRecord | None:
        return self._lookup((_NAME, name), f"{_CLIENT} WHERE name = $1", (name,), _client)

    def client_v4_by_key(self, static_public: bytes) -> ClientRecordV4 | None:
        sql = f"{_CLIENT_V4} WHERE static_key = $1"
        return self._lookup((_KEY4, static_public), sql, (static_public,), _client_v4)

    def client_v4_by_name(self, name: str) -> ClientRecordV4 | None:
        return self._lookup((_NAME4, name), f"{_CLIENT_V4} WHERE name = $1", (name,), _client_v4)

    def client_v4_by_id(self, client_id: bytes) -> ClientRecordV4 | None:
        sql = f"{_CLIENT_V4} WHERE client_id = $1"
        return self._lookup((_ID4, client_id), sql, (client_id,), _client_v4)

    def file(self, client_id: bytes, file_name: str) -> FileRecord | None:
        sql = f"{_FILE} WHERE client_id = $1 AND file_name = $2"
        return self._lookup((_F, client_id, file_name), sql, (client_id, file_name), _file)

    def file_v4(self, client_id: bytes, file_name: str) -> FileRecordV4 | None:
        sql = f"{_FILE_V4} WHERE client_id = $1 AND file_name = $2"
        return self._lookup((_F4, client_id, file_name), sql, (client_id, file_name), _file_v4)

    def client_count(self) -> int:
        """This replica's view: the count at start plus its own changes since."""
        with self._lock:
            return self._client_count

    def clients(self) -> Iterator[ClientRecord]:
        return self._stream(_CLIENT, _client)

    def clients_v4(self) -> Iterator[ClientRecordV4]:
        return self._stream(_CLIENT_V4, _client_v4)

    def files(self) -> Iterator[FileRecord]:
        return self._stream(_FILE, _file)

    def files_v4(self) -> Iterator[FileRecordV4]:
        return self._stream(_FILE_V4, _file_v4)

    def _stream(self, sql: str, build: Callable[[Any], T]) -> Iterator[T]:
        """The committed rows, a page at a time by primary key (keyset pagination: no
        cursor held open between two pages, so changes may come between them)."""
        order = "client_id, file_name" if " files" in sql else "2"  # name is unique too
        column = "(client_id, file_name)" if " files" in sql else "name"
        last: tuple[object, ...] | None = None
        while True:
            if last is None:
                page = self._call(self._pool.fetch(f"{sql} ORDER BY {order} LIMIT 1000"))
            else:
                where = f"{column} > ($1, $2)" if len(last) == 2 else f"{column} > $1"
                page = self._call(
                    self._pool.fetch(f"{sql} WHERE {where} ORDER BY {order} LIMIT 1000", *last)
                )
            yield from (build(row) for row in page)
            if len(page) < 1000:
                return
            row = page[-1]
            last = (row[0], row[1]) if " files" in sql else (row[1],)

    # --- changes: seen at once (pending), written with the next flush ------------------

    def _change(self, write: _Write, entries: dict[Hashable, object], clients: int = 0) -> None:
        segment = self._segment
        segment.writes.append(write)
        segment.client_delta += clients
        if self._memo is not None:  # pending answers first; once written, ask again
            for key in entries:
                self._memo.pop(key, None)
        with self._lock:
            for key, value in entries.items():
                self._pending[key] = (value, segment)
                segment.keys[key] = value
            self._client_count += clients

    def _pending_holder(self, key: Hashable) -> object:
        with self._lock:
            pending = self._pending.get(key)
        return None if pending is None else pending[0]

    def save_client(self, record: ClientRecord) -> None:
        """Insert or update by client id. A name this replica's unwritten changes give
        another client raises ValueError (a caller's bug, as in the other engines); a
        name another replica holds fails the flush with NameTaken: the session checked
        the name a moment ago, and only the database can say who was first since."""
        holder = self._pending_holder((_NAME, record.name))
        if isinstance(holder, ClientRecord) and holder.client_id != record.client_id:
            raise ValueError(f"name {record.name!r} belongs to another client")
        before = self.client_by_id(record.client_id)
        entries: dict[Hashable, object] = {
            (_ID, record.client_id): record,
            (_NAME, record.name): record,
        }
        if before is not None and before.name != record.name:
            entries[(_NAME, before.name)] = None
        sql = (
            "INSERT INTO clients (id, name, public_key, last_seen, aes_key)"
            " VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (id) DO UPDATE SET"
            " name = excluded.name, public_key = excluded.public_key,"
            " last_seen = excluded.last_seen"
        )
        # Never the AES key: see pg_schema (EFT-18).
        args = (record.client_id, record.name, record.public_key, record.last_seen)
        self._change((sql, args), entries, clients=0 if before is not None else 1)

    def forget_client(self, client_id: bytes) -> None:
        before = self.client_by_id(client_id)
        entries: dict[Hashable, object] = {(_ID, client_id): None}
        if before is not None:
            entries[(_NAME, before.name)] = None
        write = ("DELETE FROM clients WHERE id = $1", (client_id,))
        self._change(write, entries, clients=-1 if before is not None else 0)

    def save_file(self, record: FileRecord) -> None:
        sql = (
            "INSERT INTO files (client_id, file_name, path_name, size, cksum, verified)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id, file_name) DO UPDATE"
            " SET path_name = excluded.path_name, size = excluded.size,"
            " cksum = excluded.cksum, verified = excluded.verified"
        )
        args = (
            record.client_id,
            record.file_name,
            record.path,
            record.size,
            record.cksum,
            record.verified,
        )
        self._change((sql, args), {(_F, record.client_id, record.file_name): record})

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        sql = "DELETE FROM files WHERE client_id = $1 AND file_name = $2"
        self._change((sql, (client_id, file_name)), {(_F, client_id, file_name): None})

    def save_client_v4(self, record: ClientRecordV4) -> None:
        """Insert, or update LastSeen, as ``save_client`` does for its names; a key
        another replica registered meanwhile under another name fails the flush too."""
        holder = self._pending_holder((_NAME4, record.name))
        if isinstance(holder, ClientRecordV4) and holder.static_public != record.static_public:
            raise ValueError(f"name {record.name!r} belongs to another version-4 client")
        before = self.client_v4_by_key(record.static_public)
        stored = (
            record
            if before is None or before.name != record.name
            else before.seen(record.last_seen)
        )
        entries: dict[Hashable, object] = {
            (_KEY4, stored.static_public): stored,
            (_NAME4, stored.name): stored,
            (_ID4, stored.client_id): stored,
        }
        # The client id is the key's hash: a conflict on it is the same key. Under
        # another name (a race lost to another replica) nothing is updated: NameTaken.
        sql = (
            "INSERT INTO clients_v4 (client_id, name, static_key, registered_at, last_seen)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE"
            " SET last_seen = excluded.last_seen WHERE clients_v4.name = excluded.name"
        )
        args = (
            record.client_id,
            record.name,
            record.static_public,
            record.registered_at,
            record.last_seen,
        )
        self._change((sql, args), entries, clients=0 if before is not None else 1)

    def forget_client_v4(self, static_public: bytes) -> None:
        before = self.client_v4_by_key(static_public)
        if before is None:
            return
        entries: dict[Hashable, object] = {
            (_KEY4, static_public): None,
            (_NAME4, before.name): None,
            (_ID4, before.client_id): None,
        }
        write = ("DELETE FROM clients_v4 WHERE static_key = $1", (static_public,))
        self._change(write, entries, clients=-1)

    def save_file_v4(self, record: FileRecordV4) -> None:
        sql = (
            "INSERT INTO files_v4"
            " (client_id, file_name, path_name, size, digest, digest_algorithm)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id, file_name) DO UPDATE"
            " SET path_name = excluded.path_name, size = excluded.size,"
            " digest = excluded.digest, digest_algorithm = excluded.digest_algorithm"
        )
        args = (
            record.client_id,
            record.file_name,
            record.path,
            record.size,
            record.digest,
            record.algorithm,
        )
        self._change((sql, args), {(_F4, record.client_id, record.file_name): record})

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None:
        sql = "DELETE FROM files_v4 WHERE client_id = $1 AND file_name = $2"
        self._change((sql, (client_id, file_name)), {(_F4, client_id, file_name): None})

    def flush(self) -> concurrent.futures.Future[None] | None:
        segment = self._segment
        if not segment.writes:
            return None
        self._segment = _Segment()
        return asyncio.run_coroutine_threadsafe(self._write(segment), self._loop)

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        """Nothing left to do: a failed flush's changes left pending when it failed."""

    def close(self) -> None:
        """Write what is still pending, then close the connections and our loop."""
        pending = self.flush()
        try:
            if pending is not None:
                pending.result(self.timeout)
        finally:
            self._call(self._pool.close())
            self._stop_loop()

    async def _write(self, segment: _Segment) -> None:
        """One transaction per flush, one flush at a time (in the order of ``flush``:
        run_coroutine_threadsafe schedules in order and the lock is fair)."""
        error: BaseException | None = None
        async with self._writing:
            try:
                async with self._pool.acquire() as connection, connection.transaction():
                    for sql, args in segment.writes:
                        status = await connection.execute(sql, *args)
                        if status == "INSERT 0 0":  # the conflict clause's WHERE refused it
                            raise NameTaken("the key is registered under another name")
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name in NAME_CONSTRAINTS:
                    error = NameTaken(f"taken by another server first ({exc.constraint_name})")
                else:
                    error = RegistryError(str(exc))
            except NameTaken as exc:
                error = exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # (TimeoutError is an OSError: a command past its timeout lands here too.)
                error = RegistryError(f"{self.settings.where}: {str(exc) or type(exc).__name__}")
            self._settle(segment, written=error is None)
        if error is not None:
            raise error

    def _settle(self, segment: _Segment, *, written: bool) -> None:
        """Out of pending (the database has the truth now); a key a later flush changed
        stays pending: it is newer."""
        with self._lock:
            for key in segment.keys:
                pending = self._pending.get(key)
                if pending is not None and pending[1] is segment:
                    del self._pending[key]
            if not written:
                self._client_count -= segment.client_delta


class _Segment:
    """The changes of one flush."""

    def __init__(self) -> None:
        self.writes: list[_Write] = []
        self.keys: dict[Hashable, object] = {}
        self.client_delta = 0


__all__ = ["PgRegistry", "SchemaTooNew"]
