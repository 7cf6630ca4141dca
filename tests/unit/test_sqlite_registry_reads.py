"""The SQLite registry's reads that the cache tests do not reach: the v4 lookup by id,
the streams of all clients, and which entry the LRU cache drops first.

In process, through the public API. Which entries are cached is seen by changing a row
behind the registry's back (a connection of the test's own): a cached lookup still
answers the old row, an evicted one reads the new row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eft_protocol.registry import ClientRecord, ClientRecordV4
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

TIMEOUT = 30


def client_id(number: int) -> bytes:
    return number.to_bytes(16, "big")


def settle(registry: SqliteRegistry) -> None:
    done = registry.flush()
    if done is not None:
        done.result(TIMEOUT)


def v4_client(number: int) -> ClientRecordV4:
    return ClientRecordV4(client_id(number), f"v4-{number}", bytes([number]) * 32, 10.0, 20.0)


def test_v4_clients_are_found_by_id_pending_and_once_written(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=4)
    try:
        registry.save_client_v4(v4_client(1))
        assert registry.client_v4_by_id(client_id(1)) == v4_client(1)
        settle(registry)
        assert registry.client_v4_by_id(client_id(1)) == v4_client(1)
        assert registry.client_v4_by_id(client_id(2)) is None
    finally:
        registry.close()
    reopened = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=4)
    try:
        assert reopened.client_v4_by_id(client_id(1)) == v4_client(1)
        assert reopened.client_v4_by_id(client_id(1)) == v4_client(1)  # from the cache
    finally:
        reopened.close()


def test_the_streams_list_every_written_client_of_each_version(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=0)
    try:
        v3 = [ClientRecord(client_id(n), f"v3-{n}", float(n)) for n in range(3)]
        for record in v3:
            registry.save_client(record)
        for number in (7, 8):
            registry.save_client_v4(v4_client(number))
        settle(registry)
        assert sorted(registry.clients(), key=lambda c: c.name) == v3
        assert sorted(registry.clients_v4(), key=lambda c: c.name) == [
            v4_client(7),
            v4_client(8),
        ]
    finally:
        registry.close()


def record(number: int, name: str) -> ClientRecord:
    return ClientRecord(client_id(number), name, 1.0)


def rename_behind_the_registry(path: Path, number: int, name: str) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("UPDATE clients SET Name = ? WHERE ID = ?", (name, client_id(number)))
        connection.commit()
    finally:
        connection.close()


def test_the_cache_drops_the_least_recently_read_entry_first(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path, cache_entries=2)
    try:
        for number in (1, 2, 3):
            registry.save_client(record(number, f"c{number}"))
        settle(registry)
        registry.client_by_id(client_id(1))
        registry.client_by_id(client_id(2))
        registry.client_by_id(client_id(1))  # 1 is now the most recently read
        registry.client_by_id(client_id(3))  # so 2 is dropped, not 1
        assert registry.cached_entries() == 2
        for number in (1, 2, 3):
            rename_behind_the_registry(path, number, f"renamed-{number}")
        assert registry.client_by_id(client_id(1)) == record(1, "c1")  # cached
        assert registry.client_by_id(client_id(3)) == record(3, "c3")  # cached
        assert registry.client_by_id(client_id(2)) == record(2, "renamed-2")  # dropped
    finally:
        registry.close()


def test_a_renamed_client_is_no_longer_found_by_its_old_name(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=4)
    try:
        registry.save_client(record(1, "old"))
        settle(registry)
        assert registry.client_by_name("old") == record(1, "old")  # now cached
        registry.save_client(record(1, "new"))
        assert registry.client_by_name("old") is None  # pending
        assert registry.client_count() == 1
        settle(registry)
        assert registry.client_by_name("old") is None
        assert registry.client_by_name("new") == record(1, "new")
        registry.forget_client(client_id(1))
        assert registry.client_by_name("new") is None
        assert registry.client_by_id(client_id(1)) is None
        assert registry.client_count() == 0
        registry.forget_client(client_id(1))  # forgetting the unknown changes no count
        assert registry.client_count() == 0
    finally:
        registry.close()


def test_a_write_updates_the_entry_already_cached(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=4)
    try:
        registry.save_client(record(1, "c1"))
        settle(registry)
        assert registry.client_by_id(client_id(1)) == record(1, "c1")  # cached
        registry.save_client(ClientRecord(client_id(1), "c1", 5.0))
        settle(registry)
        assert registry.client_by_id(client_id(1)) == ClientRecord(client_id(1), "c1", 5.0)
    finally:
        registry.close()


def test_a_newer_change_stays_pending_when_an_older_flush_settles(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=4)
    try:
        registry.save_client(record(1, "c1"))
        first = registry.flush()
        registry.save_client(ClientRecord(client_id(1), "c1", 9.0))  # not flushed yet
        assert first is not None
        first.result(TIMEOUT)
        assert registry.pending_entries() == 2  # by id and by name
        assert registry.client_by_id(client_id(1)) == ClientRecord(client_id(1), "c1", 9.0)
    finally:
        registry.close()


def test_a_known_v4_key_keeps_its_row_and_updates_last_seen(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path, cache_entries=4)
    first = v4_client(1)
    again = ClientRecordV4(first.client_id, "other-name", first.static_public, 50.0, 60.0)
    try:
        registry.save_client_v4(first)
        assert registry.client_count() == 1
        settle(registry)
        registry.save_client_v4(again)
        kept = ClientRecordV4(first.client_id, first.name, first.static_public, 10.0, 60.0)
        assert registry.client_v4_by_key(first.static_public) == kept
        assert registry.client_count() == 1
        settle(registry)
    finally:
        registry.close()
    reopened = SqliteRegistry(path, cache_entries=4)
    try:
        assert reopened.client_v4_by_key(first.static_public) == kept
        assert reopened.client_v4_by_name("other-name") is None
        assert reopened.client_count() == 1
    finally:
        reopened.close()


def test_v4_lookups_by_key_and_by_name_are_cached_apart(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=8)
    try:
        for number in (1, 2):
            registry.save_client_v4(v4_client(number))
        settle(registry)
        for number in (1, 2):
            assert registry.client_v4_by_key(v4_client(number).static_public) == v4_client(number)
        for number in (1, 2):
            assert registry.client_v4_by_name(f"v4-{number}") == v4_client(number)
    finally:
        registry.close()
