"""The registry's SQLite schema: versioned with ``PRAGMA user_version``.

``MIGRATIONS`` starts from the original design's ``clients`` and ``files`` tables and
only ever appends: a database is brought forward one script at a time, each in its own
transaction with its version number, so a crash leaves it at some version, never
between two.
"""

from __future__ import annotations

import sqlite3

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
