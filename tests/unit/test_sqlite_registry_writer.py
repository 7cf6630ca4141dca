"""The SQLite registry's writer thread: named, and never what keeps a process alive.

The server closes the registry (joining the writer) before it exits; a daemon writer
means a process that failed before that close still exits instead of hanging on a
thread blocked on its queue. The name is what a traceback from that thread, a thread
dump or the log's ``threadName`` shows.
"""

from __future__ import annotations

import threading
from pathlib import Path

from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry


def test_the_writer_is_a_daemon_thread_named_eft_sqlite(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    try:
        started = [t for t in threading.enumerate() if t not in before]
        assert [(t.name, t.daemon) for t in started] == [("eft-sqlite", True)]
    finally:
        registry.close()
    assert not any(t.is_alive() for t in started), "close() joins the writer"
