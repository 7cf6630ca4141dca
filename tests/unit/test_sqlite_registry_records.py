"""What the SQLite registry writes is what a restarted server reads back, field by field.

Each test writes through the registry, closes it (as a server stopping), opens the same
file again and compares. A field not written (``LastSeen`` on a reconnect, once) or
written to the wrong column shows here, without a server process.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

ALICE = ClientRecord(b"\x01" * 16, "alice", last_seen=1000.5, public_key=b"\x30" * 160)


def test_a_client_and_each_later_change_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path)
    registry.save_client(replace(ALICE, public_key=None))
    registry.close()

    registry = SqliteRegistry(path)
    assert registry.client_by_id(ALICE.client_id) == replace(ALICE, public_key=None)
    # The key exchange, then a reconnect: a new key issued and LastSeen moved on.
    registry.save_client(ALICE)
    registry.save_client(replace(ALICE, last_seen=2000.25, aes_key=b"k" * 32))
    registry.close()

    registry = SqliteRegistry(path)
    back = registry.client_by_id(ALICE.client_id)
    assert back is not None
    assert back.last_seen == 2000.25
    assert back.public_key == ALICE.public_key
    assert back.name == "alice"
    assert back.aes_key is None, "an AES key is never written to disk"
    assert registry.client_by_name("alice") == back
    registry.close()


def test_a_forgotten_client_stays_forgotten(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path)
    registry.save_client(ALICE)
    bob = replace(ALICE, client_id=b"\x02" * 16, name="bob")
    registry.save_client(bob)
    registry.forget_client(ALICE.client_id)
    registry.close()
    registry = SqliteRegistry(path)
    assert registry.client_by_id(ALICE.client_id) is None
    assert registry.client_by_name("alice") is None
    assert registry.client_by_id(bob.client_id) == bob
    registry.close()


def test_file_records_and_their_updates_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path)
    registry.save_client(ALICE)
    first = FileRecord(ALICE.client_id, "a.bin", "files/01/a.bin", 10, 1234, verified=False)
    other = FileRecord(ALICE.client_id, "b.bin", "files/01/b.bin", 20, 5678, verified=True)
    registry.save_file(first)
    registry.save_file(other)
    registry.save_file(replace(first, size=11, cksum=4321, verified=True))
    registry.forget_file(ALICE.client_id, "b.bin")
    registry.close()
    registry = SqliteRegistry(path)
    assert list(registry.files()) == [replace(first, size=11, cksum=4321, verified=True)]
    assert registry.file(ALICE.client_id, "b.bin") is None
    registry.close()


def test_version_4_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path)
    carol = ClientRecordV4(b"\x03" * 16, "carol", b"\x09" * 32, registered_at=10.0, last_seen=10.0)
    registry.save_client_v4(carol)
    registry.save_client_v4(carol.seen(99.5))
    record = FileRecordV4(carol.client_id, "c.bin", "v4/files/03/c.bin", 7, b"\xaa" * 32)
    registry.save_file_v4(record)
    registry.close()
    registry = SqliteRegistry(path)
    assert registry.client_v4_by_key(carol.static_public) == carol.seen(99.5)
    assert registry.client_v4_by_name("carol") == carol.seen(99.5)
    assert registry.file_v4(carol.client_id, "c.bin") == record
    registry.forget_file_v4(carol.client_id, "c.bin")
    registry.close()
    registry = SqliteRegistry(path)
    assert list(registry.files_v4()) == []
    registry.close()
