"""Uploads are synced in the background while they arrive (server/eft_server/sync_behind.py)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from eft_protocol.v4.records import CHUNK
from eft_server import partial_uploads, sync_behind
from eft_server.partial_uploads import PartialStore
from eft_server.storage import FileStore, StorageError
from eft_server.sync_behind import SyncBehind

CLIENT = bytes(range(16))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def synced_files(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each background sync's size of file, then syncs for real."""
    sizes: list[int] = []
    real = sync_behind._datasync

    def record(fileno: int) -> None:
        sizes.append(os.fstat(fileno).st_size)
        real(fileno)

    monkeypatch.setattr(sync_behind, "_datasync", record)
    return sizes


def test_a_sync_starts_every_so_many_bytes_and_one_at_a_time(
    tmp_path: Path, synced_files: list[int]
) -> None:
    with open(tmp_path / "f", "wb") as handle:
        behind = SyncBehind(handle, every=1000)
        handle.write(b"x" * 999)
        behind.wrote(999)
        assert synced_files == [] and behind.synced == 0  # not due yet
        handle.write(b"x" * 10)  # Python buffers this: the sync must flush it first
        behind.wrote(10)
        behind.wait()
        assert synced_files == [1009] and behind.synced == 1009
        handle.write(b"x" * 500)
        behind.wrote(500)
        behind.wait()
        assert synced_files == [1009], "500 bytes since the last sync: not due"


def test_the_commit_waits_only_for_the_tail(tmp_path: Path, synced_files: list[int]) -> None:
    store = FileStore(tmp_path)
    upload = store.open_upload(CLIENT, "big.bin")
    piece = bytes(256 * 1024)
    for _ in range(sync_behind.SYNC_BEHIND // len(piece) + 1):
        upload.write(piece)
    final = upload.commit()
    assert synced_files and synced_files[0] >= sync_behind.SYNC_BEHIND
    assert final.stat().st_size == sync_behind.SYNC_BEHIND + len(piece)


def test_a_failed_background_sync_fails_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fileno: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sync_behind, "_datasync", broken)
    store = FileStore(tmp_path)
    upload = store.open_upload(CLIENT, "f.bin")
    upload._behind._every = 10
    upload.write(bytes(10))  # starts the sync that fails
    # Linux reports a write-back error once per open file: had the background sync
    # swallowed it, the commit's own fsync could succeed over lost data.
    with pytest.raises(StorageError, match="Input/output error"):
        upload.commit()
    assert not list((tmp_path / "tmp").iterdir()), "the temporary file is removed"
    assert not (tmp_path / "files").joinpath(CLIENT.hex(), "f.bin").exists()


def test_closing_a_file_while_its_sync_runs_is_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    real = sync_behind._datasync

    def slow(fileno: int) -> None:
        started.set()
        release.wait(5)
        real(fileno)

    monkeypatch.setattr(sync_behind, "_datasync", slow)
    before = _open_fds()
    store = FileStore(tmp_path)
    upload = store.open_upload(CLIENT, "f.bin")
    upload._behind._every = 10
    upload.write(bytes(10))
    assert started.wait(5)
    upload.discard()  # the upload's own descriptor closes; the sync holds a duplicate
    release.set()
    deadline = time.monotonic() + 5
    while _open_fds() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_fds() == before, "the sync's duplicate descriptor is closed"


def test_version_4_durable_chunks_advance_without_blocking_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced_files: list[int]
) -> None:
    monkeypatch.setattr(partial_uploads, "SYNC_EVERY", 2)
    store = PartialStore(tmp_path)
    upload = store.open(CLIENT, bytes(16), "f.bin", 5 * CHUNK)
    chunk = bytes(CHUNK)
    for index in (1, 2):
        upload.write(index, chunk)
    upload._settle()  # chunk 2 is written in the background; its write starts the sync
    upload._behind.wait()
    upload.write(3, chunk)  # takes in the finished sync, records it in the sidecar
    assert upload.durable_chunks == 2
    upload.suspend()
    resumed = store.open(CLIENT, bytes(16), "f.bin", 5 * CHUNK)
    assert resumed.durable_chunks == 3, "a broken connection syncs what arrived"
    resumed.discard()
