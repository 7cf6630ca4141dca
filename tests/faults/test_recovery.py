"""Recovery paths: start-up reconciliation of version 4's files and partial uploads, the
sweep for leftovers while running, and a data directory written by an earlier release."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eft_client.identity import write_identity
from eft_protocol import crypto
from eft_protocol.cksum import cksum
from eft_protocol.client_session import Identity
from eft_protocol.v4.file_digest import file_digest
from eft_server.sqlite_registry import MIGRATIONS
from tests.hostile.helpers import wait_for_log, wait_until
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def rows(data_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{data_dir / 'eft.sqlite3'}?mode=ro", uri=True) as db:
        return list(db.execute(query, args))


def test_start_up_reconciles_version_4_files_and_partial_uploads_with_the_disk(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory("--shutdown-grace", "1")
    client = ClientDir(tmp_path / "vera", "vera", server.address, protocol=4)
    sources = [write_random_file(tmp_path / n, 3000 + i, seed=i) for i, n in enumerate("abc")]
    assert client.run(sources).returncode == 0
    server.stop()

    mine = server.data_dir / "v4" / "files" / client.client_id_hex
    (mine / "a").unlink()  # a record whose file is gone
    (mine / "b").write_bytes(b"replaced, and the crash took the new record")  # size differs
    appeared = b"renamed into place, then the crash took its record"
    (mine / "appeared.bin").write_bytes(appeared)  # a file without a record
    stranger = server.data_dir / "v4" / "files" / ("ab" * 16)
    stranger.mkdir()
    (stranger / "unknown.bin").write_bytes(b"a client the registry never knew")
    partial = server.data_dir / "v4" / "partial" / client.client_id_hex
    partial.mkdir(exist_ok=True)
    for name in ("kept.part", "kept.json", "half.json.tmp", "norecord.part", "nofile.json"):
        (partial / name).write_bytes(b"{}")

    server.start()  # on the port it holds
    recovered = wait_for_log(server, "recovered")
    assert recovered["v4_file_records_removed"] == 1
    assert recovered["v4_file_records_added"] == 1
    assert recovered["v4_file_records_corrected"] == 1
    assert recovered["v4_partial_leftovers"] == 3
    assert sorted(p.name for p in partial.iterdir()) == ["kept.json", "kept.part"]
    server.stop()
    found = {
        name: (size, bytes(digest))
        for name, size, digest in rows(
            server.data_dir, "SELECT FileName, Size, Digest FROM files_v4"
        )
    }
    assert set(found) == {"b", "c", "appeared.bin"}
    b = (mine / "b").read_bytes()
    assert found["b"] == (len(b), file_digest(b).digest())
    assert found["appeared.bin"] == (len(appeared), file_digest(appeared).digest())
    assert (stranger / "unknown.bin").exists(), "files of unknown clients are left alone"


def test_leftovers_are_swept_while_running_and_fresh_uploads_are_kept(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The default timeouts (an hour, a day), swept every 50 ms instead of every 5 min."""
    server = server_factory("--sweep-interval", "0.05")
    tmp = server.data_dir / "tmp"
    partial = server.data_dir / "v4" / "partial" / ("cd" * 16)
    partial.mkdir(parents=True)
    stale = [tmp / "stale.part", partial / "stale.part", partial / "stale.json"]
    fresh = [tmp / "fresh.part", partial / "fresh.part", partial / "fresh.json"]
    for path in stale + fresh:
        path.write_bytes(b"{}")
    two_days_ago = time.time() - 2 * 86400
    for path in stale:
        os.utime(path, (two_days_ago, two_days_ago))

    def removed() -> tuple[int, int] | None:  # a sweep may come between two utimes above
        records = [r for r in server.logs() if r.get("event") == "leftovers_removed"]
        counts = (
            sum(r["temporary_files"] for r in records),
            sum(r["partial_uploads"] for r in records),
        )
        return counts if min(counts) >= 1 else None

    assert wait_until(removed, "both stale leftovers swept") == (1, 1)
    assert [path.exists() for path in stale] == [False] * 3
    assert [path.exists() for path in fresh] == [True] * 3


def test_a_data_directory_of_the_first_release_is_served(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Schema 1 (the original design's tables, no sizes) and its file layout: the
    server migrates it, fills in the sizes and checksums, and the old client goes on."""
    name, client_id = "olga", bytes(range(16))
    key = crypto.generate_rsa_key()
    data = tmp_path / "old" / "data"
    stored = data / "files" / client_id.hex() / "old.txt"
    stored.parent.mkdir(parents=True)
    old_content = b"stored by the first release\n"
    stored.write_bytes(old_content)
    with sqlite3.connect(data / "eft.sqlite3") as db:
        db.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO clients VALUES (?, ?, ?, 1.0, NULL)",
            (client_id, name, crypto.public_key_der(key)),
        )
        db.execute("INSERT INTO files VALUES (?, 'old.txt', ?, 1)", (client_id, str(stored)))
    client = ClientDir(tmp_path / name, name, "")
    write_identity(client.path, Identity(name, client_id, key))

    server = ServerProcess(data, tmp_path / "old.log").start()
    try:
        client.server = server.address
        new = write_random_file(tmp_path / "new.bin", 5000, seed=7)
        run = client.run([new])
        assert run.returncode == 0, run.stderr
        assert "reconnected" in run.kinds()
    finally:
        server.stop()
    assert rows(data, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert sorted(rows(data, "SELECT FileName, Size, Cksum FROM files")) == [
        ("new.bin", 5000, cksum(new.read_bytes())),
        ("old.txt", len(old_content), cksum(old_content)),
    ]
    assert stored.read_bytes() == old_content
