"""The registry's writer: a failed write reaches the flush that covers it, and only it.

A failure is made the way SQLite would refuse a write on its own: a trigger raises for
one name (as a constraint, a full disk or an I/O error would), on a real database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eft_protocol.registry import ClientRecord
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

TIMEOUT = 10


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SqliteRegistry]:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    with sqlite3.connect(tmp_path / DATABASE_FILE) as db:
        db.execute(
            "CREATE TRIGGER doom BEFORE INSERT ON clients WHEN NEW.Name LIKE 'doomed%' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    yield registry
    registry.close()


def names_on_disk(registry: SqliteRegistry) -> set[str]:
    with sqlite3.connect(f"file:{registry.path}?mode=ro", uri=True) as db:
        return {name for (name,) in db.execute("SELECT Name FROM clients")}


def test_a_write_that_fails_alone_is_reported_to_its_flush(registry: SqliteRegistry) -> None:
    # The old writer took a write as soon as it was queued; a flush() that came after
    # the writer had taken it alone was told success (checked: it was, row missing).
    registry.save_client(ClientRecord(bytes(16), "doomed", 1.0))
    done = registry.flush()
    assert done is not None
    with pytest.raises(sqlite3.IntegrityError, match="injected"):
        done.result(TIMEOUT)
    assert names_on_disk(registry) == set()
    # The writer goes on: the next change is written and reported as such.
    registry.save_client(ClientRecord(bytes(15) + b"\x01", "fine", 1.0))
    later = registry.flush()
    assert later is not None
    later.result(TIMEOUT)
    assert names_on_disk(registry) == {"fine"}


def test_in_one_batch_a_failed_segment_fails_alone(registry: SqliteRegistry) -> None:
    """Group commit puts several connections' changes in one transaction: one that
    fails must not take the others with it, nor be reported as written."""
    entered, release = threading.Event(), threading.Event()

    def gate() -> int:  # holds the writer in the first batch while more segments queue
        entered.set()
        release.wait(TIMEOUT)
        return 0

    registry._connection.create_function("gate", 0, gate)
    with sqlite3.connect(registry.path) as db:
        db.execute(
            "CREATE TRIGGER hold BEFORE INSERT ON clients WHEN NEW.Name = 'first' "
            "BEGIN SELECT gate(); END"
        )
    registry.save_client(ClientRecord(bytes([1] * 16), "first", 1.0))
    first = registry.flush()
    assert first is not None
    assert entered.wait(TIMEOUT)
    futures = []
    for number, name in enumerate(("before", "doomed-middle", "after"), start=2):
        registry.save_client(ClientRecord(bytes([number] * 16), name, 1.0))
        futures.append(registry.flush())
    release.set()
    first.result(TIMEOUT)
    before, middle, after = futures
    assert before is not None and middle is not None and after is not None
    before.result(TIMEOUT)
    after.result(TIMEOUT)
    with pytest.raises(sqlite3.IntegrityError):
        middle.result(TIMEOUT)
    assert names_on_disk(registry) == {"first", "before", "after"}


def test_close_writes_changes_nobody_flushed(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    registry.save_client(ClientRecord(bytes(16), "unflushed", 1.0))
    registry.close()
    assert names_on_disk(registry) == {"unflushed"}
