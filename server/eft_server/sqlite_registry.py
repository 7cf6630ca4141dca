"""The registry in SQLite: an in-memory copy answers, a writer thread persists.

Protocol decisions read the in-memory copy, so they never wait on the disk. Every change
is queued for one writer thread, which commits whatever has queued up in one
transaction (group commit). ``flush()`` returns a future that completes once everything
queued so far is durable; the connection driver awaits it before sending a response that
reports a change, so a client is never told of a registration or a stored file that a
crash could still take back.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS`` starts from the
original design's ``clients`` and ``files`` tables and only ever appends.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_protocol.v4.file_digest import NAME as DIGEST_NAME

from .registry import EphemeralRegistry

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
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        self.schema_version = migrate(connection)
        self._load(connection)
        self._connection = connection
        self._unflushed = False  # touched only on the event loop's thread
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

    # --- changes: applied in memory now, queued for the disk ----------------------

    def _enqueue(self, write: _Write) -> None:
        self._unflushed = True
        self._queue.put(write)

    def save_client(self, record: ClientRecord) -> None:
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
            )
        )

    def save_file(self, record: FileRecord) -> None:
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
            )
        )

    def forget_client(self, client_id: bytes) -> None:
        super().forget_client(client_id)
        self._enqueue(lambda db: db.execute("DELETE FROM clients WHERE ID = ?", (client_id,)))

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        super().forget_file(client_id, file_name)
        self._enqueue(
            lambda db: db.execute(
                "DELETE FROM files WHERE ID = ? AND FileName = ?", (client_id, file_name)
            )
        )

    def save_client_v4(self, record: ClientRecordV4) -> None:
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
            )
        )

    def save_file_v4(self, record: FileRecordV4) -> None:
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
            )
        )

    def flush(self) -> concurrent.futures.Future[None] | None:
        if not self._unflushed:
            return None
        self._unflushed = False
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(done)
        return done

    def close(self) -> None:
        """Write everything queued, then close the database."""
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
            writes = [item for item in batch if callable(item)]
            waiters = [item for item in batch if isinstance(item, concurrent.futures.Future)]
            error: BaseException | None = None
            if writes:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    for write in writes:
                        write(db)
                    db.execute("COMMIT")
                except sqlite3.Error as exc:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    error = exc
            for waiter in waiters:
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
            if _STOP in batch:
                return
