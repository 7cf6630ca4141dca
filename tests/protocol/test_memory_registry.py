"""MemoryRegistry (eft_protocol.registry), the engine of tests and ``--ephemeral``: the
lookups by id, name and key, unique names, forgetting, files, and the client count of
both versions."""

from __future__ import annotations

import pytest

from eft_protocol.registry import (
    ClientRecord,
    ClientRecordV4,
    FileRecord,
    FileRecordV4,
    MemoryRegistry,
)

ALICE = ClientRecord(b"A" * 16, "alice", 1.0, public_key=b"k" * 160)
BOB = ClientRecord(b"B" * 16, "bob", 2.0)
CAROL4 = ClientRecordV4(b"C" * 16, "carol", b"c" * 32, 3.0, 3.0)
DAVE4 = ClientRecordV4(b"D" * 16, "dave", b"d" * 32, 4.0, 4.0)


def test_a_v4_record_seen_again_keeps_everything_but_the_time() -> None:
    later = CAROL4.seen(9.0)
    assert later == ClientRecordV4(b"C" * 16, "carol", b"c" * 32, 3.0, 9.0)


def test_version_3_clients_are_found_by_id_and_by_name() -> None:
    registry = MemoryRegistry()
    assert registry.client_by_id(ALICE.client_id) is None
    assert registry.client_by_name("alice") is None
    registry.save_client(ALICE)
    registry.save_client(BOB)
    assert registry.client_by_id(ALICE.client_id) == ALICE
    assert registry.client_by_name("bob") == BOB
    assert registry.client_by_name("carol") is None
    assert sorted(c.name for c in registry.clients()) == ["alice", "bob"]


def test_a_version_3_name_belongs_to_one_client() -> None:
    registry = MemoryRegistry()
    registry.save_client(ALICE)
    with pytest.raises(ValueError, match="alice"):
        registry.save_client(ClientRecord(b"Z" * 16, "alice", 5.0))
    assert registry.client_by_name("alice") == ALICE
    seen = ClientRecord(ALICE.client_id, "alice", 7.0, public_key=ALICE.public_key)
    registry.save_client(seen)  # the owner saving again is no conflict
    assert registry.client_by_id(ALICE.client_id) == seen
    assert registry.client_by_name("alice") == seen


def test_forgetting_a_version_3_client_frees_its_name_only_if_it_held_it() -> None:
    registry = MemoryRegistry()
    registry.save_client(ALICE)
    registry.forget_client(ALICE.client_id)
    assert registry.client_by_id(ALICE.client_id) is None
    assert registry.client_by_name("alice") is None
    registry.save_client(ClientRecord(b"Z" * 16, "alice", 5.0))  # the name is free again
    registry.forget_client(b"?" * 16)  # unknown: nothing happens
    assert registry.client_by_name("alice") is not None
    assert registry.client_count() == 1


def test_version_4_clients_are_found_by_key_name_and_id() -> None:
    registry = MemoryRegistry()
    assert registry.client_v4_by_key(CAROL4.static_public) is None
    assert registry.client_v4_by_name("carol") is None
    assert registry.client_v4_by_id(CAROL4.client_id) is None
    registry.save_client_v4(CAROL4)
    registry.save_client_v4(DAVE4)
    assert registry.client_v4_by_key(b"c" * 32) == CAROL4
    assert registry.client_v4_by_name("dave") == DAVE4
    assert registry.client_v4_by_id(b"C" * 16) == CAROL4
    assert sorted(c.name for c in registry.clients_v4()) == ["carol", "dave"]
    assert registry.client_by_name("carol") is None  # the versions are kept apart


def test_a_version_4_name_belongs_to_one_key() -> None:
    registry = MemoryRegistry()
    registry.save_client_v4(CAROL4)
    with pytest.raises(ValueError, match="carol"):
        registry.save_client_v4(ClientRecordV4(b"Z" * 16, "carol", b"z" * 32, 5.0, 5.0))
    assert registry.client_v4_by_name("carol") == CAROL4
    registry.save_client_v4(CAROL4.seen(8.0))
    assert registry.client_v4_by_name("carol") == CAROL4.seen(8.0)


def test_forgetting_a_version_4_client_frees_its_name_and_id() -> None:
    registry = MemoryRegistry()
    registry.save_client_v4(CAROL4)
    registry.save_client_v4(DAVE4)
    registry.forget_client_v4(CAROL4.static_public)
    assert registry.client_v4_by_key(CAROL4.static_public) is None
    assert registry.client_v4_by_name("carol") is None
    assert registry.client_v4_by_id(CAROL4.client_id) is None
    assert registry.client_v4_by_name("dave") == DAVE4
    registry.forget_client_v4(b"?" * 32)  # unknown: nothing happens
    assert registry.clients_v4() == [DAVE4]


def test_forgetting_a_key_keeps_a_name_and_id_saved_since_under_another_key() -> None:
    registry = MemoryRegistry()
    registry.save_client_v4(CAROL4)
    registry.forget_client_v4(CAROL4.static_public)
    again = ClientRecordV4(CAROL4.client_id, "carol", b"n" * 32, 6.0, 6.0)
    registry.save_client_v4(again)
    registry.forget_client_v4(CAROL4.static_public)  # the old key again: already gone
    assert registry.client_v4_by_name("carol") == again
    assert registry.client_v4_by_id(CAROL4.client_id) == again


def test_files_of_both_versions_by_client_and_name() -> None:
    registry = MemoryRegistry()
    one = FileRecord(ALICE.client_id, "a.bin", "/s/a.bin", 10, 1234, True)
    two = FileRecord(BOB.client_id, "a.bin", "/s/b/a.bin", 20, 5678, False)
    registry.save_file(one)
    registry.save_file(two)
    assert registry.file(ALICE.client_id, "a.bin") == one
    assert registry.file(BOB.client_id, "a.bin") == two
    assert registry.file(ALICE.client_id, "b.bin") is None
    registry.forget_file(ALICE.client_id, "a.bin")
    registry.forget_file(ALICE.client_id, "never.bin")
    assert registry.files() == [two]
    four = FileRecordV4(CAROL4.client_id, "c.bin", "/s/c.bin", 30, b"h" * 32)
    registry.save_file_v4(four)
    assert registry.file_v4(CAROL4.client_id, "c.bin") == four
    assert registry.file_v4(DAVE4.client_id, "c.bin") is None
    assert registry.files_v4() == [four]
    registry.forget_file_v4(CAROL4.client_id, "c.bin")
    registry.forget_file_v4(CAROL4.client_id, "c.bin")
    assert registry.files_v4() == []
    assert registry.files() == [two]


def test_the_client_count_adds_both_versions() -> None:
    registry = MemoryRegistry()
    assert registry.client_count() == 0
    registry.save_client(ALICE)
    registry.save_client_v4(CAROL4)
    registry.save_client_v4(DAVE4)
    assert registry.client_count() == 3
    registry.save_client(ALICE)  # saved again: still one client
    assert registry.client_count() == 3
