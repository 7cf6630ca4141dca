"""The registry in SQLite: an in-memory copy answers, a writer thread persists.

Protocol decisions read the in-memory copy, so they never wait on the disk. Changes
are collected until ``flush()``, which hands them to one writer thread together with
the future it returns; the writer commits whatever has queued up in one transaction
(group commit), each flush's changes in a savepoint of their own. The future completes
once those changes are durable, or with the error that refused them: never with success
for a change that is not in the database, and never with another flush's error. The
connection driver calls ``flush()`` right after the changes it reports (no await in
between) and awaits the future before sending that response, so a client is never told
of a registration or a stored file that a crash could still take back.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS`` starts from the
original design's ``clients`` and ``files`` tables and only ever appends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_protocol.v4.file_digest import NAME as DIGEST_NAME

from .registry import EphemeralRegistry
from .storage import create_private

DIGEST_ALGORITHM = DIGEST_NAME.lower()  # files_v4.DigestAlgorithm of new rows

DATABASE_FILE = "eft.sqlite3"

MIGRATIONS: tuple[str, ...] = (
    # 1: the tables of the original design (spec section 10).
    """
    CREATE TABLE clients (
        ID BLOB PRIMARY KEY CHECK (length(ID) = 16),
        Name TEXT NOT NULL UNIQUE,
        PublicKey BLOB,
        LastSeen REAL NOT NULL,
        AESKey BLOB
    );
    CREATE TABLE files (
        ID BLOB NOT NULL REFERENCES clients (ID),
        FileName TEXT NOT NULL,
        PathName TEXT NOT NULL,
        Verified INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (ID, FileName)
    );
    """,
    # 2: what the server needs to answer for a stored file without reading it again.
    """
    ALTER TABLE files ADD COLUMN Size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE files ADD COLUMN Cksum INTEGER NOT NULL DEFAULT 0;
    """,
    # (AESKey stays in the schema for the original design's sake; it is always NULL.)
    # 3: version 4, kept apart: its clients are identified by their static keys.
    """
    CREATE TABLE clients_v4 (
        ClientID BLOB PRIMARY KEY CHECK (length(ClientID) = 16),
        Name TEXT NOT NULL UNIQUE,
        StaticKey BLOB NOT NULL UNIQUE CHECK (length(StaticKey) = 32),
        RegisteredAt REAL NOT NULL,
        LastSeen REAL NOT NULL
    );
    CREATE TABLE files_v4 (
        ClientID BLOB NOT NULL REFERENCES clients_v4 (ClientID),
        FileName TEXT NOT NULL,
        PathName TEXT NOT NULL,
        Size INTEGER NOT NULL,
        SHA256 BLOB NOT NULL,
        PRIMARY KEY (ClientID, FileName)
    );
    """,
    # 4: version 4's whole-file digest became BLAKE3; rows from before hold SHA-256.
    """
    ALTER TABLE files_v4 RENAME COLUMN SHA256 TO Digest;
    ALTER TABLE files_v4 ADD COLUMN DigestAlgorithm TEXT NOT NULL DEFAULT 'sha256';
    """,
)

_Write = Callable[[sqlite3.Connection], object]  # execute()'s cursor is not used
_Undo = Callable[[], None]  # puts the in-memory copy back as it was before a change
_STOP = object()


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version it is now at."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this server "
            f"({len(MIGRATIONS)}); upgrade the server"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with connection:
            connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    return len(MIGRATIONS)


class SqliteRegistry(EphemeralRegistry):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        create_private(path)  # SQLite makes it 0644 less the umask, and its -wal/-shm alike
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        self.schema_version = migrate(connection)
        self._load(connection)
        self._connection = connection
        self._segment = _Segment()  # changes since the last flush (event loop's thread)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="eft-sqlite", daemon=True)
        self._writer.start()

    def _load(self, connection: sqlite3.Connection) -> None:
        rows = connection.execute("SELECT ID, Name, PublicKey, LastSeen, AESKey FROM clients")
        for client_id, name, public_key, last_seen, aes_key in rows:
            super().save_client(ClientRecord(client_id, name, last_seen, public_key, aes_key))
        rows = connection.execute("SELECT ID, FileName, PathName, Size, Cksum, Verified FROM files")
        for client_id, file_name, path, size, cksum, verified in rows:
            super().save_file(FileRecord(client_id, file_name, path, size, cksum, bool(verified)))
        rows = connection.execute(
            "SELECT ClientID, Name, StaticKey, RegisteredAt, LastSeen FROM clients_v4"
        )
        for client_id, name, static_key, registered_at, last_seen in rows:
            super().save_client_v4(
                ClientRecordV4(client_id, name, static_key, registered_at, last_seen)
            )
        rows = connection.execute("SELECT ClientID, FileName, PathName, Size, Digest FROM files_v4")
        for client_id, file_name, path, size, digest in rows:
            super().save_file_v4(FileRecordV4(client_id, file_name, path, size, digest))

    # --- changes: applied in memory now, written with the next flush -------------

    def _enqueue(self, write: _Write, undo: _Undo) -> None:
        self._segment.writes.append(write)
        self._segment.undo.append(undo)

    def _undo_client(self, client_id: bytes) -> _Undo:
        before = self.client_by_id(client_id)

        def undo() -> None:
            EphemeralRegistry.forget_client(self, client_id)
            if before is not None:
                EphemeralRegistry.save_client(self, before)

        return undo

    def _undo_file(self, client_id: bytes, file_name: str) -> _Undo:
        before = self.file(client_id, file_name)

        def undo() -> None:
            EphemeralRegistry.forget_file(self, client_id, file_name)
            if before is not None:
                EphemeralRegistry.save_file(self, before)

        return undo

    def _undo_client_v4(self, static_public: bytes) -> _Undo:
        before = self.client_v4_by_key(static_public)

        def undo() -> None:
            EphemeralRegistry.forget_client_v4(self, static_public)
            if before is not None:
                EphemeralRegistry.save_client_v4(self, before)

        return undo

    def _undo_file_v4(self, client_id: bytes, file_name: str) -> _Undo:
        before = self.file_v4(client_id, file_name)

        def undo() -> None:
            EphemeralRegistry.forget_file_v4(self, client_id, file_name)
            if before is not None:
                EphemeralRegistry.save_file_v4(self, before)

        return undo

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        if isinstance(flushed, _Segment):
            undo, flushed.undo = flushed.undo, []  # once, whoever asks first
            for step in reversed(undo):
                step()

    def save_client(self, record: ClientRecord) -> None:
        undo = self._undo_client(record.client_id)
        super().save_client(record)
        self._enqueue(
            lambda db: db.execute(
                "INSERT INTO clients (ID, Name, PublicKey, LastSeen, AESKey) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ID) DO UPDATE SET Name = excluded.Name, "
                "PublicKey = excluded.PublicKey, LastSeen = excluded.LastSeen, "
                "AESKey = excluded.AESKey",
                # Never the AES key: the server has no use for it after issuing it, and on
                # disk it would decrypt recorded sessions (docs/SECURITY.md, EFT-18).
                (record.client_id, record.name, record.public_key, record.last_seen, None),
            ),
            undo,
        )

    def save_file(self, record: FileRecord) -> None:
        undo = self._undo_file(record.client_id, record.file_name)
        super().save_file(record)
        self._enqueue(
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
            undo,
        )

    def forget_client(self, client_id: bytes) -> None:
        undo = self._undo_client(client_id)
        super().forget_client(client_id)
        self._enqueue(
            lambda db: db.execute("DELETE FROM clients WHERE ID = ?", (client_id,)),
            undo,
        )

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        undo = self._undo_file(client_id, file_name)
        super().forget_file(client_id, file_name)
        self._enqueue(
            lambda db: db.execute(
                "DELETE FROM files WHERE ID = ? AND FileName = ?", (client_id, file_name)
            ),
            undo,
        )

    def save_client_v4(self, record: ClientRecordV4) -> None:
        undo = self._undo_client_v4(record.static_public)
        super().save_client_v4(record)
        self._enqueue(
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
            undo,
        )

    def save_file_v4(self, record: FileRecordV4) -> None:
        undo = self._undo_file_v4(record.client_id, record.file_name)
        super().save_file_v4(record)
        self._enqueue(
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
                    DIGEST_ALGORITHM,
                ),
            ),
            undo,
        )

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None:
        undo = self._undo_file_v4(client_id, file_name)
        super().forget_file_v4(client_id, file_name)
        self._enqueue(
            lambda db: db.execute(
                "DELETE FROM files_v4 WHERE ClientID = ? AND FileName = ?", (client_id, file_name)
            ),
            undo,
        )

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
                _write_segments(db, segments)
            if _STOP in batch:
                return


class _Segment(concurrent.futures.Future[None]):
    """The changes of one flush, and the future that tells their caller their fate."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[_Write] = []
        self.undo: list[_Undo] = []


def _write_segments(db: sqlite3.Connection, segments: list[_Segment]) -> None:
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
    for segment in segments:
        error = failed.get(segment)
        if error is None:
            segment.set_result(None)
        else:
            segment.set_exception(error)
