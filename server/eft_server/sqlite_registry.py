"""The registry in SQLite: the records stay in the file, a bounded cache answers most reads.

Memory holds no copy of the tables. A read looks in the changes not yet written
(pending, pinned until their write is done), then in an LRU cache of written records
(``cache_entries`` lookups, hits and misses alike, kept up to date when a change
to a cached record is written), and on a miss queries the database
through a reader connection of its own (WAL: it never waits on the writer, and it sees
committed rows only). So memory is flat in the number of clients and files stored.

Changes are collected until ``flush()``, which hands them to one writer thread together
with the future it returns; the writer commits whatever has queued up in one transaction
(group commit), each flush's changes in a savepoint of their own, then takes them out
of pending: written, they update the records the cache holds; refused, they are simply
gone (reads ask the database again, which never had them).
The future completes once those changes are durable, or with the error that refused
them: never with success for a change that is not in the database, and never with
another flush's error. The connection driver calls ``flush()`` right after the changes
it reports (no await in between) and awaits the future before sending that response, so
a client is never told of a registration or a stored file that a crash could still take
back.

The schema and its migrations are in ``sqlite_schema.py``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_protocol.v4.file_digest import NAME as DIGEST_NAME

from .sqlite_schema import MIGRATIONS, migrate
from .storage import create_private

DIGEST_ALGORITHM = DIGEST_NAME.lower()  # files_v4.DigestAlgorithm of new rows

DATABASE_FILE = "eft.sqlite3"

#: Lookups kept in memory (``--registry-cache``): a few hundred bytes each.
DEFAULT_CACHE_ENTRIES = 10_000
#: SQLite's own page cache, per connection (writer and reader; SQLite's default is 2 MiB):
#: the operating system's page cache holds the rest of the file anyway.
PAGE_CACHE_KIB = 512


_Write = Callable[[sqlite3.Connection], object]  # execute()'s cursor is not used
_STOP = object()
_MISSING = object()
T = TypeVar("T")

__all__ = ["DATABASE_FILE", "MIGRATIONS", "SqliteRegistry", "migrate"]

# Cache keys: one per way a record is looked up. A change replaces every key of its
# record (and of the record it replaces), so no key can answer with a stale record.
_ID, _NAME, _KEY4, _NAME4, _ID4, _FILE, _FILE4 = "id", "name", "key4", "name4", "id4", "f", "f4"


def _client(row: Any) -> ClientRecord:
    client_id, name, last_seen, public_key, aes_key = row
    return ClientRecord(client_id, name, last_seen, public_key, aes_key)


def _client_v4(row: Any) -> ClientRecordV4:
    return ClientRecordV4(*row)


def _file(row: Any) -> FileRecord:
    client_id, file_name, path, size, cksum, verified = row
    return FileRecord(client_id, file_name, path, size, cksum, bool(verified))


def _file_v4(row: Any) -> FileRecordV4:
    return FileRecordV4(*row)


class SqliteRegistry:
    """Implements ``registry.ServerRegistry``. Reads and changes come from one thread at
    a time (the event loop's); the writes are done on a thread of their own."""

    def __init__(self, path: Path, *, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self.path = path
        self.cache_entries = max(0, cache_entries)
        create_private(path)  # SQLite makes it 0644 less the umask, and its -wal/-shm alike
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        self.schema_version = migrate(connection)
        self._connection = connection
        # Reads: a connection of their own, so that they see committed rows only (the
        # writer's transaction in progress may still be rolled back).
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only = ON")
        self._reader.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        self._lock = threading.Lock()  # pending, cache and count: loop and writer threads
        self._pending: dict[Hashable, tuple[object, _Segment]] = {}
        self._cache: OrderedDict[Hashable, object] = OrderedDict()
        self._generation = 0  # writes settled: a read that raced one is not cached
        (clients,) = connection.execute("SELECT count(*) FROM clients").fetchone()
        (clients_v4,) = connection.execute("SELECT count(*) FROM clients_v4").fetchone()
        self._client_count: int = clients + clients_v4
        self._segment = _Segment()  # changes since the last flush (event loop's thread)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="eft-sqlite", daemon=True)
        self._writer.start()

    # --- reads: pending, cache, then the database -----------------------------------

    def _lookup(
        self, key: Hashable, sql: str, args: tuple[object, ...], build: Callable[[Any], T]
    ) -> T | None:
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                return pending[0]  # type: ignore[return-value]
            cached = self._cache.get(key, _MISSING)
            if cached is not _MISSING:
                self._cache.move_to_end(key)
                return cached  # type: ignore[return-value]
            generation = self._generation
        row = self._reader.execute(sql, args).fetchone()
        value = None if row is None else build(row)
        with self._lock:
            if generation == self._generation and key not in self._pending:
                self._remember(key, value)
        return value

    def _remember(self, key: Hashable, value: object) -> None:
        """Into the LRU cache, the oldest out beyond its size (the lock is held)."""
        if not self.cache_entries:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)

    def cached_entries(self) -> int:
        """Lookups held in the cache now (changes still pending are not counted)."""
        with self._lock:
            return len(self._cache)

    def pending_entries(self) -> int:
        with self._lock:
            return len(self._pending)

    def client_by_id(self, client_id: bytes) -> ClientRecord | None:
        sql = "SELECT ID, Name, LastSeen, PublicKey, AESKey FROM clients WHERE ID = ?"
        return self._lookup((_ID, client_id), sql, (client_id,), _client)

    def client_by_name(self, name: str) -> ClientRecord | None:
        sql = "SELECT ID, Name, LastSeen, PublicKey, AESKey FROM clients WHERE Name = ?"
        return self._lookup((_NAME, name), sql, (name,), _client)

    def client_v4_by_key(self, static_public: bytes) -> ClientRecordV4 | None:
        sql = (
            "SELECT ClientID, Name, StaticKey, RegisteredAt, LastSeen"
            " FROM clients_v4 WHERE StaticKey = ?"
        )
        return self._lookup((_KEY4, static_public), sql, (static_public,), _client_v4)

    def client_v4_by_name(self, name: str) -> ClientRecordV4 | None:
        sql = (
            "SELECT ClientID, Name, StaticKey, RegisteredAt, LastSeen"
            " FROM clients_v4 WHERE Name = ?"
        )
        return self._lookup((_NAME4, name), sql, (name,), _client_v4)

    def client_v4_by_id(self, client_id: bytes) -> ClientRecordV4 | None:
        sql = (
            "SELECT ClientID, Name, StaticKey, RegisteredAt, LastSeen"
            " FROM clients_v4 WHERE ClientID = ?"
        )
        return self._lookup((_ID4, client_id), sql, (client_id,), _client_v4)

    def file(self, client_id: bytes, file_name: str) -> FileRecord | None:
        sql = (
            "SELECT ID, FileName, PathName, Size, Cksum, Verified"
            " FROM files WHERE ID = ? AND FileName = ?"
        )
        return self._lookup((_FILE, client_id, file_name), sql, (client_id, file_name), _file)

    def file_v4(self, client_id: bytes, file_name: str) -> FileRecordV4 | None:
        sql = (
            "SELECT ClientID, FileName, PathName, Size, Digest, DigestAlgorithm"
            " FROM files_v4 WHERE ClientID = ? AND FileName = ?"
        )
        key = (_FILE4, client_id, file_name)
        return self._lookup(key, sql, (client_id, file_name), _file_v4)

    def client_count(self) -> int:
        with self._lock:
            return self._client_count

    def files(self) -> Iterator[FileRecord]:
        return self._stream(
            "SELECT ID, FileName, PathName, Size, Cksum, Verified FROM files", _file
        )

    def files_v4(self) -> Iterator[FileRecordV4]:
        return self._stream(
            "SELECT ClientID, FileName, PathName, Size, Digest, DigestAlgorithm FROM files_v4",
            _file_v4,
        )

    def clients(self) -> Iterator[ClientRecord]:
        return self._stream("SELECT ID, Name, LastSeen, PublicKey, AESKey FROM clients", _client)

    def clients_v4(self) -> Iterator[ClientRecordV4]:
        return self._stream(
            "SELECT ClientID, Name, StaticKey, RegisteredAt, LastSeen FROM clients_v4", _client_v4
        )

    def _stream(self, sql: str, build: Callable[[Any], T]) -> Iterator[T]:
        """The committed rows, a batch at a time, through a connection of their own
        (lookups and changes may come between two batches)."""
        connection = sqlite3.connect(self.path)
        try:
            connection.execute("PRAGMA query_only = ON")
            cursor = connection.execute(sql)
            while rows := cursor.fetchmany(1000):
                yield from (build(row) for row in rows)
        finally:
            connection.close()

    # --- changes: seen at once (pending), written with the next flush ------------------

    def _change(self, write: _Write, entries: dict[Hashable, object], clients: int = 0) -> None:
        segment = self._segment
        segment.writes.append(write)
        segment.client_delta += clients
        with self._lock:
            for key, value in entries.items():
                self._pending[key] = (value, segment)
                segment.keys[key] = value
            self._client_count += clients

    def save_client(self, record: ClientRecord) -> None:
        """Insert or replace by client id; a name another client holds raises ValueError."""
        holder = self.client_by_name(record.name)
        if holder is not None and holder.client_id != record.client_id:
            raise ValueError(f"name {record.name!r} belongs to another client")
        before = self.client_by_id(record.client_id)
        entries: dict[Hashable, object] = {
            (_ID, record.client_id): record,
            (_NAME, record.name): record,
        }
        if before is not None and before.name != record.name:
            entries[(_NAME, before.name)] = None
        self._change(
            lambda db: db.execute(
                "INSERT INTO clients (ID, Name, PublicKey, LastSeen, AESKey) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ID) DO UPDATE SET Name = excluded.Name, "
                "PublicKey = excluded.PublicKey, LastSeen = excluded.LastSeen, "
                "AESKey = excluded.AESKey",
                # Never the AES key: the server has no use for it after issuing it, and on
                # disk it would decrypt recorded sessions (docs/SECURITY.md, EFT-18).
                (record.client_id, record.name, record.public_key, record.last_seen, None),
            ),
            entries,
            clients=0 if before is not None else 1,
        )

    def forget_client(self, client_id: bytes) -> None:
        before = self.client_by_id(client_id)
        entries: dict[Hashable, object] = {(_ID, client_id): None}
        if before is not None:
            entries[(_NAME, before.name)] = None
        self._change(
            lambda db: db.execute("DELETE FROM clients WHERE ID = ?", (client_id,)),
            entries,
            clients=-1 if before is not None else 0,
        )

    def save_file(self, record: FileRecord) -> None:
        self._change(
            lambda db: db.execute(
                "INSERT INTO files (ID, FileName, PathName, Size, Cksum, Verified) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ID, FileName) DO UPDATE SET "
                "PathName = excluded.PathName, Size = excluded.Size, "
                "Cksum = excluded.Cksum, Verified = excluded.Verified",
                (
                    record.client_id,
                    record.file_name,
                    record.path,
                    record.size,
                    record.cksum,
                    int(record.verified),
                ),
            ),
            {(_FILE, record.client_id, record.file_name): record},
        )

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        self._change(
            lambda db: db.execute(
                "DELETE FROM files WHERE ID = ? AND FileName = ?", (client_id, file_name)
            ),
            {(_FILE, client_id, file_name): None},
        )

    def save_client_v4(self, record: ClientRecordV4) -> None:
        """Insert, or update LastSeen; a name another key holds raises ValueError."""
        holder = self.client_v4_by_name(record.name)
        if holder is not None and holder.static_public != record.static_public:
            raise ValueError(f"name {record.name!r} belongs to another version-4 client")
        before = self.client_v4_by_key(record.static_public)
        # A row keeps its id, name and key once written (only LastSeen is updated): the
        # pending record is the one the database will hold.
        stored = record if before is None else before.seen(record.last_seen)
        entries: dict[Hashable, object] = {
            (_KEY4, stored.static_public): stored,
            (_NAME4, stored.name): stored,
            (_ID4, stored.client_id): stored,
        }
        self._change(
            lambda db: db.execute(
                "INSERT INTO clients_v4 (ClientID, Name, StaticKey, RegisteredAt, LastSeen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ClientID) DO UPDATE SET "
                "LastSeen = excluded.LastSeen",
                (
                    record.client_id,
                    record.name,
                    record.static_public,
                    record.registered_at,
                    record.last_seen,
                ),
            ),
            entries,
            clients=0 if before is not None else 1,
        )

    def forget_client_v4(self, static_public: bytes) -> None:
        """Remove a version-4 client (eft-admin free-name; its file records go first)."""
        before = self.client_v4_by_key(static_public)
        if before is None:
            return
        entries: dict[Hashable, object] = {
            (_KEY4, static_public): None,
            (_NAME4, before.name): None,
            (_ID4, before.client_id): None,
        }
        self._change(
            lambda db: db.execute("DELETE FROM clients_v4 WHERE StaticKey = ?", (static_public,)),
            entries,
            clients=-1,
        )

    def save_file_v4(self, record: FileRecordV4) -> None:
        self._change(
            lambda db: db.execute(
                "INSERT INTO files_v4 (ClientID, FileName, PathName, Size, Digest, "
                "DigestAlgorithm) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (ClientID, FileName) DO UPDATE SET PathName = excluded.PathName, "
                "Size = excluded.Size, Digest = excluded.Digest, "
                "DigestAlgorithm = excluded.DigestAlgorithm",
                (
                    record.client_id,
                    record.file_name,
                    record.path,
                    record.size,
                    record.digest,
                    record.algorithm,
                ),
            ),
            {(_FILE4, record.client_id, record.file_name): record},
        )

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None:
        self._change(
            lambda db: db.execute(
                "DELETE FROM files_v4 WHERE ClientID = ? AND FileName = ?", (client_id, file_name)
            ),
            {(_FILE4, client_id, file_name): None},
        )

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        """Nothing left to do: the writer dropped a failed flush's changes from pending
        when it failed them, so reads ask the database again (which never had them)."""

    def flush(self) -> concurrent.futures.Future[None] | None:
        """Send the changes made since the last flush to the writer, with the future
        that reports their fate: only this future, so a failed write can never be
        missed by its caller or blamed on another (the writes and their waiter travel
        as one item, however the writer batches them)."""
        segment = self._segment
        if not segment.writes:
            return None
        self._segment = _Segment()
        self._queue.put(segment)
        return segment

    def close(self) -> None:
        """Write everything queued, then close the database."""
        self.flush()
        self._queue.put(_STOP)
        self._writer.join()
        self._connection.close()
        self._reader.close()

    # --- the writer thread --------------------------------------------------------

    def _write_loop(self) -> None:
        db = self._connection
        while True:
            batch = [self._queue.get()]
            while True:  # take everything already queued: one transaction for all
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            segments = [item for item in batch if isinstance(item, _Segment)]
            if segments:
                self._settle(segments, _write_segments(db, segments))
            if _STOP in batch:
                return

    def _settle(self, segments: list[_Segment], failed: dict[_Segment, BaseException]) -> None:
        """Take settled changes out of pending, the written ones into the cache (the
        database has the truth), then tell each flush's caller. A change a later flush
        made to the same key stays pending: it is newer."""
        with self._lock:
            self._generation += 1
            for segment in segments:
                written = segment not in failed
                for key, value in segment.keys.items():
                    pending = self._pending.get(key)
                    if pending is not None and pending[1] is segment:
                        del self._pending[key]
                    # Write-through, not write-allocate: a record is cached once it is
                    # looked up (a stored file's record seldom is: it must not push out
                    # the clients that are).
                    if written and key in self._cache:
                        self._cache[key] = value
                if not written:
                    self._client_count -= segment.client_delta
        for segment in segments:
            error = failed.get(segment)
            if error is None:
                segment.set_result(None)
            else:
                segment.set_exception(error)


class _Segment(concurrent.futures.Future[None]):
    """The changes of one flush, and the future that tells their caller their fate."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[_Write] = []
        self.keys: dict[Hashable, object] = {}  # what reads see until it is written
        self.client_delta = 0  # clients these changes add (or remove)


def _write_segments(
    db: sqlite3.Connection, segments: list[_Segment]
) -> dict[_Segment, BaseException]:
    """One transaction for every segment; each in a savepoint of its own, so a segment
    that fails (a constraint) is rolled back alone and the others are still committed.
    A failed commit (the disk refused) fails them all."""
    failed: dict[_Segment, BaseException] = {}
    try:
        db.execute("BEGIN IMMEDIATE")
        for segment in segments:
            db.execute("SAVEPOINT segment")
            try:
                for write in segment.writes:
                    write(db)
            except sqlite3.Error as exc:
                db.execute("ROLLBACK TO segment")
                failed[segment] = exc
            db.execute("RELEASE segment")
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        failed = dict.fromkeys(segments, exc)
    return failed
