"""A change the database refused is undone in memory too (``revert``), for every kind of
change; and a transaction that cannot even start fails every flush in it.

The server applies a change in memory at once and answers only once it is written; if
the write fails, it reverts the change so that memory and disk agree again. A refusal
is made the way SQLite would make one on its own: a trigger that aborts every write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

TIMEOUT = 10
ALICE = ClientRecord(b"\x01" * 16, "alice", 1.0, public_key=b"\x30" * 160)
FILE = FileRecord(ALICE.client_id, "a.bin", "files/01/a.bin", 10, 1234, verified=True)
CAROL = ClientRecordV4(b"\x03" * 16, "carol", b"\x09" * 32, registered_at=5.0, last_seen=5.0)
FILE4 = FileRecordV4(CAROL.client_id, "c.bin", "v4/files/03/c.bin", 7, b"\xaa" * 32)
TABLES = ("clients", "files", "clients_v4", "files_v4")


def snapshot(registry: SqliteRegistry) -> dict[str, Any]:
    """What the registry answers now (changes not yet written included), through the
    point reads the server uses."""
    return {
        "clients": [registry.client_by_id(i) for i in (ALICE.client_id, b"\x02" * 16)],
        "by_name": [registry.client_by_name(n) for n in ("alice", "bob")],
        "files": [registry.file(ALICE.client_id, n) for n in ("a.bin", "b.bin")],
        "clients_v4": [registry.client_v4_by_key(k) for k in (CAROL.static_public, b"\x08" * 32)],
        "v4_by_name": [registry.client_v4_by_name(n) for n in ("carol", "dave")],
        "files_v4": [registry.file_v4(CAROL.client_id, n) for n in ("c.bin", "d")],
    }


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {table: sorted(db.execute(f"SELECT * FROM {table}")) for table in TABLES}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SqliteRegistry]:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    registry.save_client(ALICE)
    registry.save_file(FILE)
    registry.save_client_v4(CAROL)
    registry.save_file_v4(FILE4)
    done = registry.flush()
    assert done is not None
    done.result(TIMEOUT)
    with sqlite3.connect(registry.path) as db:
        for table in TABLES:
            for action in ("INSERT", "UPDATE", "DELETE"):
                db.execute(
                    f"CREATE TRIGGER refuse_{action}_{table} BEFORE {action} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
    yield registry
    registry.close()


Change = Callable[[SqliteRegistry], None]
CHANGES: dict[str, Change] = {
    "new client": lambda r: r.save_client(ClientRecord(b"\x02" * 16, "bob", 2.0)),
    "client updated": lambda r: r.save_client(ClientRecord(ALICE.client_id, "alice", 9.0)),
    "client forgotten": lambda r: r.forget_client(ALICE.client_id),
    "new file": lambda r: r.save_file(FileRecord(ALICE.client_id, "b.bin", "p", 1, 2, False)),
    "file updated": lambda r: r.save_file(FileRecord(ALICE.client_id, "a.bin", "p", 3, 4, False)),
    "file forgotten": lambda r: r.forget_file(ALICE.client_id, "a.bin"),
    "new v4 client": lambda r: r.save_client_v4(
        ClientRecordV4(b"\x04" * 16, "dave", b"\x08" * 32, 6.0, 6.0)
    ),
    "v4 client seen": lambda r: r.save_client_v4(CAROL.seen(50.0)),
    "new v4 file": lambda r: r.save_file_v4(FileRecordV4(CAROL.client_id, "d", "p", 1, bytes(32))),
    "v4 file updated": lambda r: r.save_file_v4(
        FileRecordV4(CAROL.client_id, "c.bin", "q", 2, bytes(32))
    ),
    "v4 file forgotten": lambda r: r.forget_file_v4(CAROL.client_id, "c.bin"),
}


@pytest.mark.parametrize("name", CHANGES)
def test_a_refused_change_is_seen_at_once_and_reverted_after(
    registry: SqliteRegistry, name: str
) -> None:
    before, on_disk = snapshot(registry), rows(registry.path)
    CHANGES[name](registry)
    assert snapshot(registry) != before, "the change is applied in memory at once"
    done = registry.flush()
    assert done is not None
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        done.result(TIMEOUT)
    registry.revert(done)
    assert snapshot(registry) == before
    registry.revert(done)  # a second revert changes nothing
    assert snapshot(registry) == before
    assert rows(registry.path) == on_disk


def test_a_transaction_that_cannot_start_fails_every_flush_in_it(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    registry._connection.execute("PRAGMA busy_timeout = 0")  # fail at once, do not wait
    blocker = sqlite3.connect(registry.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        registry.save_client(ALICE)
        done = registry.flush()
        assert done is not None
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            done.result(TIMEOUT)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    registry.revert(done)
    assert registry.client_by_id(ALICE.client_id) is None
    registry.save_client(ALICE)  # the writer goes on
    later = registry.flush()
    assert later is not None
    later.result(TIMEOUT)
    registry.close()
    reopened = SqliteRegistry(registry.path)
    assert reopened.client_by_id(ALICE.client_id) == ALICE
    reopened.close()


def test_a_commit_that_fails_is_rolled_back_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A COMMIT that SQLite refuses leaves the transaction open (a deferred constraint
    here; a busy or full disk alike): the writer must roll it back, or every later
    flush would fail to begin its own."""
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    with sqlite3.connect(registry.path) as db:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        db.execute(
            "CREATE TRIGGER orphan AFTER INSERT ON clients WHEN NEW.Name = 'orphan' "
            "BEGIN INSERT INTO child VALUES (42); END"
        )
    registry.save_client(ClientRecord(b"\x05" * 16, "orphan", 1.0))
    refused = registry.flush()
    assert refused is not None
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        refused.result(TIMEOUT)
    registry.revert(refused)
    registry.save_client(ALICE)
    later = registry.flush()
    assert later is not None
    later.result(TIMEOUT)
    assert [r[1] for r in rows(registry.path)["clients"]] == ["alice"]
    registry.close()


def test_a_refused_flush_of_two_new_clients_takes_both_off_the_count(
    registry: SqliteRegistry,
) -> None:
    before = registry.client_count()
    registry.save_client(ClientRecord(b"\x02" * 16, "bob", 2.0))
    registry.save_client_v4(ClientRecordV4(b"\x04" * 16, "dave", b"\x08" * 32, 6.0, 6.0))
    assert registry.client_count() == before + 2
    done = registry.flush()
    assert done is not None
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        done.result(TIMEOUT)
    registry.revert(done)
    assert registry.client_count() == before
