"""The seam between the connections and the local directory (server/eft_server/
file_store.py): each coroutine does what the blocking store below it does, with the
arguments given, and hands back its answer (the S3 store has tests of its own)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest
from eft_protocol.v4.records import CHUNK
from eft_server.file_store import (
    LocalFileStore,
    LocalUnfinishedUpload,
    LocalUnfinishedUploads,
    UnfinishedUpload,
)
from eft_server.partial_uploads import PartialStore

T = TypeVar("T")
ALICE = b"\x0a" * 16
UPLOAD, OTHER = bytes(range(16)), bytes(range(1, 17))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_a_version_3_upload_committed_under_its_name(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    assert store.local_files_dir == tmp_path / "files"

    async def scenario() -> str:
        upload = await store.open_upload(ALICE, "report.txt")
        await upload.write(b"hello ")
        await upload.write(memoryview(b"world"))
        return await upload.commit()

    where = run(scenario())
    assert where == str(tmp_path / "files" / ALICE.hex() / "report.txt")
    assert Path(where).read_bytes() == b"hello world"
    assert list((tmp_path / "tmp").iterdir()) == []
    assert run(store.close()) is None


def test_a_discarded_version_3_upload_leaves_nothing(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)

    async def scenario() -> None:
        upload = await store.open_upload(ALICE, "gone.txt")
        await upload.write(b"partial")
        await upload.discard()

    run(scenario())
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "files" / ALICE.hex() / "gone.txt").exists()


def test_leftover_attempts_removed_all_or_by_age(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    old, fresh = tmp_path / "tmp" / "old.part", tmp_path / "tmp" / "fresh.part"
    for path in (old, fresh):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert run(store.remove_temporary_files(older_than=600)) == 1
    assert not old.exists() and fresh.exists()
    assert run(store.remove_temporary_files()) == 1
    assert not fresh.exists()


def _unfinished(tmp_path: Path) -> tuple[PartialStore, LocalUnfinishedUploads]:
    partials = PartialStore(tmp_path)
    return partials, LocalUnfinishedUploads(partials)


def test_a_version_4_upload_through_the_seam(tmp_path: Path) -> None:
    partials, uploads = _unfinished(tmp_path)
    assert uploads.partials is partials
    assert uploads.local_files_dir == tmp_path / "v4" / "files"
    data = bytes(i % 251 for i in range(CHUNK + 10))

    async def scenario() -> tuple[bytes, str]:
        upload = await uploads.open(ALICE, UPLOAD, "docs/a.bin", len(data), DigestAlgorithm.BLAKE3)
        assert upload.durable_chunks == 0
        await upload.write(1, data[:CHUNK])
        await upload.write(2, data[CHUNK:])
        digest = await upload.finish()
        return digest, await upload.commit(ALICE, "docs/a.bin")

    digest, where = run(scenario())
    assert digest == file_digest(data).digest()
    assert where == str(partials.client_root(ALICE) / "docs" / "a.bin")
    assert Path(where).read_bytes() == data
    assert partials.usage() == (0, 0)


class _StallingHandle:
    """A disk whose first write stalls until the test lets it go (or a minute passes,
    so that a regression fails instead of hanging)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.stalled, self.go_on = threading.Event(), threading.Event()
        self.timed_out = False

    def write(self, data: bytes | memoryview) -> int:
        if not self.stalled.is_set():
            self.stalled.set()
            self.timed_out = not self.go_on.wait(60)
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_a_chunk_waiting_for_the_previous_ones_write_leaves_the_loop_free(
    tmp_path: Path,
) -> None:
    """A resumable chunk is written in a thread; the next chunk's write must wait for it
    by awaiting, not by blocking the event loop, which serves every other connection
    meanwhile. Here the only one who can let the stalled disk go on is a coroutine on
    the same loop: with the loop held, it would never run."""
    _, uploads = _unfinished(tmp_path)
    data = bytes(i % 251 for i in range(2 * CHUNK))

    async def scenario() -> tuple[_StallingHandle, bytes, bool]:
        upload = await uploads.open(ALICE, UPLOAD, "a.bin", len(data), DigestAlgorithm.BLAKE3)
        assert isinstance(upload, LocalUnfinishedUpload)
        disk = _StallingHandle(upload.partial._handle)
        upload.partial._handle = cast(Any, disk)
        await upload.write(1, data[:CHUNK])
        await asyncio.to_thread(disk.stalled.wait)  # the writer thread is in the write
        second = asyncio.create_task(upload.write(2, data[CHUNK:]))
        await asyncio.wait([second], timeout=0)  # it starts, and waits for the first
        waiting = not second.done()
        disk.go_on.set()  # from the loop: only if the second write did not hold it
        await second
        return disk, await upload.finish(), waiting

    disk, digest, waiting = run(scenario())
    assert not disk.timed_out, "the second write held the event loop until the disk went on"
    assert waiting
    assert digest == file_digest(data).digest()


def test_a_suspended_upload_resumes_after_its_durable_chunks(tmp_path: Path) -> None:
    partials, uploads = _unfinished(tmp_path)
    size = 3 * CHUNK

    async def first() -> None:
        upload = await uploads.open(ALICE, UPLOAD, "a.bin", size, DigestAlgorithm.BLAKE3)
        assert isinstance(upload, LocalUnfinishedUpload)
        await upload.write(1, bytes(CHUNK))
        upload.partial.sync()
        await upload.suspend()

    async def second() -> UnfinishedUpload:
        return await uploads.open(ALICE, UPLOAD, "a.bin", size, DigestAlgorithm.BLAKE3)

    run(first())
    resumed = run(second())
    assert resumed.durable_chunks == 1
    assert partials.usage() == (1, CHUNK)
    run(resumed.discard())
    assert partials.usage() == (0, 0)
    assert list((partials.partial_dir / ALICE.hex()).iterdir()) == []


def test_measure_answers_the_room_left_and_what_is_in_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partials, uploads = _unfinished(tmp_path)
    (partials.client_root(ALICE) / "taken").mkdir(parents=True)
    free = 1_000_000 * 4096
    monkeypatch.setattr(os, "statvfs", lambda path: _Free(f_bavail=1_000_000, f_frsize=4096))

    async def scenario() -> tuple[Any, ...]:
        upload = await uploads.open(ALICE, UPLOAD, "taken", 10 * CHUNK, DigestAlgorithm.BLAKE3)
        other = await uploads.open(ALICE, OTHER, "b", 3 * CHUNK, DigestAlgorithm.BLAKE3)
        asking = await uploads.measure(upload, ALICE, "taken", keep_free=1000)
        fine = await uploads.measure(upload, ALICE, "free/name", keep_free=0)
        foreign = await uploads.measure(cast(Any, _Foreign()), ALICE, "free/name", keep_free=0)
        await upload.discard()
        await other.discard()
        return asking, fine, foreign

    asking, fine, foreign = run(scenario())
    # the asking upload's own bytes to come are not held against it, the other's are
    assert asking == (free - 1000 - 3 * CHUNK, "taken is a folder on the server")
    assert fine == (free - 3 * CHUNK, None)
    # an upload of another store asks as nobody: both are held against it
    assert foreign == (free - 13 * CHUNK, None)


class _Free:
    def __init__(self, f_bavail: int, f_frsize: int) -> None:
        self.f_bavail, self.f_frsize = f_bavail, f_frsize


class _Foreign:
    durable_chunks = 0


def test_sweeps_and_usage_go_to_the_partial_store(tmp_path: Path) -> None:
    partials, uploads = _unfinished(tmp_path)

    async def keep(upload_id: bytes) -> None:
        upload = await uploads.open(ALICE, upload_id, "a", 2 * CHUNK, DigestAlgorithm.BLAKE3)
        await upload.write(1, bytes(CHUNK))
        assert isinstance(upload, LocalUnfinishedUpload)
        upload.partial.sync()
        await upload.suspend()

    run(keep(UPLOAD))
    assert uploads.usage() == partials.usage() == (1, CHUNK)
    assert run(uploads.remove_expired(3600.0)) == 0
    assert uploads.usage() == (1, CHUNK)
    assert run(uploads.remove_expired(0.0)) == 1
    assert uploads.usage() == (0, 0)
    run(keep(OTHER))
    stray = partials.partial_dir / ALICE.hex() / "stray.json.tmp"
    stray.write_bytes(b"")
    assert run(uploads.remove_leftovers()) >= 1
    assert not stray.exists()


def test_the_name_and_digest_algorithm_given_reach_the_upload(tmp_path: Path) -> None:
    _, uploads = _unfinished(tmp_path)
    data = b"sha-256 this"

    async def scenario() -> tuple[str, bytes]:
        upload = await uploads.open(ALICE, UPLOAD, "docs/b.txt", len(data), DigestAlgorithm.SHA256)
        assert isinstance(upload, LocalUnfinishedUpload)
        await upload.write(1, data)
        name = upload.partial.name
        digest = await upload.finish()
        await upload.discard()
        return name, digest

    assert run(scenario()) == ("docs/b.txt", hashlib.sha256(data).digest())
