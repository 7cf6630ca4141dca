"""The SQLite registry's schema moves forward without losing rows (sqlite_registry.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eft_protocol.registry import ClientRecordV4, FileRecordV4
from eft_server.sqlite_registry import DATABASE_FILE, MIGRATIONS, SqliteRegistry

CLIENT = bytes(range(16))
OLD_DIGEST = bytes(32 * [0xAA])  # a SHA-256, as servers stored before BLAKE3


def _database_at(path: Path, version: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.close()


def test_version_4_file_rows_keep_their_sha256_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    _database_at(path, 3)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO clients_v4 VALUES (?, 'alice', ?, 1.0, 1.0)", (CLIENT, bytes(32)))
        db.execute(
            "INSERT INTO files_v4 VALUES (?, 'a.txt', '/x/a.txt', 5, ?)", (CLIENT, OLD_DIGEST)
        )

    registry = SqliteRegistry(path)
    try:
        assert registry.schema_version == len(MIGRATIONS) == 4
        assert list(registry.files_v4()) == [
            FileRecordV4(CLIENT, "a.txt", "/x/a.txt", 5, OLD_DIGEST, "sha256")
        ]
        registry.save_client_v4(ClientRecordV4(CLIENT, "alice", bytes(32), 1.0, 2.0))
        registry.save_file_v4(FileRecordV4(CLIENT, "b.txt", "/x/b.txt", 6, bytes(32)))
        done = registry.flush()
        assert done is not None
        done.result(timeout=10)
    finally:
        registry.close()

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT FileName, Digest, DigestAlgorithm FROM files_v4 ORDER BY FileName"
        ).fetchall()
    assert rows == [("a.txt", OLD_DIGEST, "sha256"), ("b.txt", bytes(32), "blake3")]


def test_a_database_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    _database_at(path, len(MIGRATIONS))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this server"):
        SqliteRegistry(path)
