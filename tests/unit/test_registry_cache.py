"""The SQLite registry keeps its records on disk: memory holds a bounded cache.

Stored straight through the registry, in process: no timing is asserted, only that the
cache never holds more than its limit, and that what is read back is what was stored
(from pending changes, from the cache, or from the database after eviction).
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_server.registry import open_registry
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

TIMEOUT = 30
RECORDS = 100_000
CACHE = 1_000
BATCH = 1_000


def client_id(number: int) -> bytes:
    return number.to_bytes(16, "big")


def wait(registry: SqliteRegistry) -> None:
    done = registry.flush()
    if done is not None:
        done.result(TIMEOUT)


def test_a_hundred_thousand_records_leave_the_cache_within_its_limit(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=CACHE)
    clients = RECORDS // 100
    try:
        for number in range(clients):
            registry.save_client(ClientRecord(client_id(number), f"client-{number}", 1.0))
            if number % BATCH == BATCH - 1:
                wait(registry)
        for number in range(RECORDS):
            owner = client_id(number % clients)
            registry.save_file(FileRecord(owner, f"f{number}", f"/d/f{number}", number, 7, True))
            if number % BATCH == BATCH - 1:
                wait(registry)
                assert registry.cached_entries() <= CACHE
        wait(registry)
        assert registry.pending_entries() == 0
        assert registry.cached_entries() <= CACHE
        assert registry.client_count() == clients
        # Long evicted: read back from the database, and cached again within the limit.
        assert registry.file(client_id(3), "f3") == FileRecord(
            client_id(3), "f3", "/d/f3", 3, 7, True
        )
        assert registry.client_by_name("client-5") == ClientRecord(client_id(5), "client-5", 1.0)
        assert registry.client_by_id(client_id(clients)) is None
        assert sum(1 for _ in registry.files()) == RECORDS
        assert registry.cached_entries() <= CACHE
    finally:
        registry.close()
    with sqlite3.connect(tmp_path / DATABASE_FILE) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (RECORDS,)


def test_changes_are_seen_before_they_are_written_even_without_a_cache(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=0)
    try:
        alice = ClientRecord(client_id(1), "alice", 1.0)
        registry.save_client(alice)
        assert registry.client_by_name("alice") == alice  # pending: pinned
        with pytest.raises(ValueError, match="another client"):
            registry.save_client(ClientRecord(client_id(2), "alice", 1.0))
        wait(registry)
        assert registry.pending_entries() == 0
        assert registry.cached_entries() == 0
        assert registry.client_by_id(client_id(1)) == alice  # from the database
        registry.forget_client(client_id(1))
        assert registry.client_by_name("alice") is None
        assert registry.client_count() == 0
        wait(registry)
        assert registry.client_by_name("alice") is None
    finally:
        registry.close()


def test_a_change_the_database_refused_is_gone_from_memory_too(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    with sqlite3.connect(tmp_path / DATABASE_FILE) as db:
        db.execute(
            "CREATE TRIGGER doom BEFORE INSERT ON clients WHEN NEW.Name = 'doomed' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    try:
        registry.save_client(ClientRecord(client_id(1), "doomed", 1.0))
        assert registry.client_count() == 1
        done = registry.flush()
        assert done is not None
        with pytest.raises(sqlite3.IntegrityError):
            done.result(TIMEOUT)
        registry.revert(done)
        assert registry.client_by_name("doomed") is None  # the name is free again
        assert registry.client_by_id(client_id(1)) is None
        assert registry.client_count() == 0
    finally:
        registry.close()


def test_version_4_clients_by_key_name_and_id_agree_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    registry = open_registry(tmp_path, ephemeral=False, cache_entries=2)
    record = ClientRecordV4(client_id(9), "bob", bytes(range(32)), 1.0, 1.0)
    registry.save_client_v4(record)
    registry.save_client_v4(record.seen(5.0))
    registry.save_file_v4(FileRecordV4(client_id(9), "a", "/a", 1, bytes(32)))
    registry.close()
    again = open_registry(tmp_path, ephemeral=False, cache_entries=2)
    try:
        seen = record.seen(5.0)
        assert again.client_v4_by_key(bytes(range(32))) == seen
        assert again.client_v4_by_name("bob") == seen
        assert again.client_v4_by_id(client_id(9)) == seen
        assert again.file_v4(client_id(9), "a") == FileRecordV4(
            client_id(9), "a", "/a", 1, bytes(32)
        )
        assert again.client_count() == 1
        with pytest.raises(ValueError, match="another version-4 client"):
            again.save_client_v4(ClientRecordV4(client_id(8), "bob", bytes(32), 1.0, 1.0))
    finally:
        again.close()


class _RacingReader:
    """The registry's read connection, but the first read it serves has a write settle
    while it runs: the row is read, then a change to it is flushed and settled, then
    the (now stale) row is handed back, as when the writer thread wins the race."""

    def __init__(self, real: sqlite3.Connection, race: Callable[[], None]) -> None:
        self._real = real
        self._race: Callable[[], None] | None = race

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> _Rows:
        row = self._real.execute(sql, args).fetchone()
        race, self._race = self._race, None
        if race is not None:
            race()
        return _Rows(row)


class _Rows:
    def __init__(self, row: object) -> None:
        self._row = row

    def fetchone(self) -> object:
        return self._row


def test_a_read_that_raced_a_settled_write_is_not_cached(tmp_path: Path) -> None:
    old = ClientRecord(client_id(1), "old", 1.0)
    new = ClientRecord(client_id(1), "new", 2.0)
    first = SqliteRegistry(tmp_path / DATABASE_FILE)
    first.save_client(old)
    wait(first)
    first.close()
    registry = SqliteRegistry(tmp_path / DATABASE_FILE, cache_entries=CACHE)  # cache empty
    try:
        registry.save_client(ClientRecord(client_id(2), "other", 1.0))
        wait(registry)  # a write has settled before the race too

        def race() -> None:
            registry.save_client(new)
            wait(registry)

        real = registry._reader
        registry._reader = _RacingReader(real, race)  # type: ignore[assignment]
        assert registry.client_by_id(client_id(1)) == old  # read before the write
        registry._reader = real
        assert registry.client_by_id(client_id(1)) == new  # not the stale row, cached
    finally:
        registry.close()


def test_the_registry_may_be_read_and_closed_from_another_thread_than_its_opener(
    tmp_path: Path,
) -> None:
    """Its read connection is not tied to the opening thread: the server closes the
    registry in a worker thread (app.py, ``asyncio.to_thread(self.registry.close)``)."""
    first = SqliteRegistry(tmp_path / DATABASE_FILE)
    first.save_client(ClientRecord(client_id(1), "one", 1.0))
    wait(first)
    first.close()
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    with concurrent.futures.ThreadPoolExecutor(1) as other:
        found = other.submit(registry.client_by_id, client_id(1)).result(TIMEOUT)
        assert found == ClientRecord(client_id(1), "one", 1.0)
        other.submit(registry.close).result(TIMEOUT)
