"""Version 4's unfinished uploads as the speed work left them (server/eft_server/partial_uploads.py,
issues 22 and 25), in process: a streamed file's upload (fresh, no progress record; a
small one's chunk written before ``write`` returns, a large one's in a thread), a
resumable upload's chunk written in a thread (whatever reads the upload waits for it),
and a group's data syncs started in batches, then its files stored together.

The writer thread is made to wait where a test needs the order to be certain: the
module's pool is replaced by one of a single thread that the test holds busy."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest
from eft_protocol.v4.records import CHUNK
from eft_server import partial_uploads
from eft_server.partial_uploads import (
    PartialStore,
    PartialUpload,
    UploadBusy,
    commit_group,
    start_syncs,
)
from eft_server.storage import StorageError

ALICE = b"\x0a" * 16
FDS = Path("/proc/self/fd")
needs_fds = pytest.mark.skipif(not FDS.is_dir(), reason="counts descriptors in /proc")


def _upload_id(n: int) -> bytes:
    return bytes([n]) * 16


def _open_fds() -> int:
    return len(os.listdir(FDS))


class HeldWriter:
    """The module's chunk writer, one thread, held busy until ``let_go``: a chunk handed
    to it is certainly not written before then."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._go = threading.Event()
        self.pool.submit(self._go.wait)

    def let_go(self) -> None:
        self._go.set()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWriter]:
    writer = HeldWriter()
    monkeypatch.setattr(partial_uploads, "_WRITERS", writer.pool)
    yield writer
    writer.let_go()
    writer.pool.shutdown()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the files synced (each regular file's, as it was synced)."""
    sizes: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if not os.path.isdir(f"/proc/self/fd/{fd}") and info.st_size:
            sizes.append(info.st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return sizes


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """``call()`` started in a thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# --- a streamed file's upload ---------------------------------------------------------


def test_a_streamed_upload_is_fresh_and_keeps_no_progress_record(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    resumable = store.open(ALICE, _upload_id(1), "a", 2 * CHUNK)
    resumable.write(1, bytes(CHUNK))
    resumable.suspend()  # a resumable upload's first chunk, kept on disk with its record
    assert resumable.sidecar.exists()

    streamed = store.open(ALICE, _upload_id(1), "a", 2 * CHUNK, stream=True)
    assert (streamed.durable_chunks, streamed.written_chunks, streamed.received) == (0, 0, 0)
    assert streamed.part.stat().st_size == 0  # emptied: nothing of it is resumed
    kept = resumable.sidecar.read_text()
    streamed.write(1, b"abc")
    streamed.sync()
    assert streamed.digest() == file_digest(b"abc").digest()
    assert resumable.sidecar.read_text() == kept  # the streamed upload records nothing
    streamed.discard()


def test_a_streamed_upload_writes_no_progress_record_yet_counts_its_bytes(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, _upload_id(2), "a", 10, stream=True)
    assert not upload.sidecar.exists()
    assert store.usage() == (1, 0)
    upload.write(1, b"0123456789")
    upload.sync()  # what a resumable upload records; a streamed one only counts it
    assert not upload.sidecar.exists()
    assert store.usage() == (1, 10)
    upload.discard()
    assert store.usage() == (0, 0)


def test_a_streamed_chunk_is_written_before_write_returns(tmp_path: Path, held: HeldWriter) -> None:
    """Its data is a view of the record buffer the next record reuses: written later,
    the file would hold the next record's bytes."""
    upload = PartialStore(tmp_path).open(ALICE, _upload_id(3), "a", 5, stream=True)
    buffer = bytearray(b"hello")
    upload.write(1, memoryview(buffer))
    buffer[:] = b"XXXXX"  # the next record opened into the same buffer
    held.let_go()
    assert upload.digest() == file_digest(b"hello").digest()
    upload.sync_data()
    assert upload.part.read_bytes() == b"hello"
    upload.discard()


@pytest.mark.parametrize("read", ["digest", "sync_data"])
def test_a_large_streamed_file_is_written_in_the_writer_thread_and_waited_for(
    tmp_path: Path, held: HeldWriter, fsyncs: list[int], read: str
) -> None:
    """From ``WRITE_BEHIND_FROM`` bytes the event loop hands the write and the hash to a
    writer thread (issue 22); the digest and the group's data sync cover it."""
    size = partial_uploads.WRITE_BEHIND_FROM
    data = os.urandom(size)
    upload = PartialStore(tmp_path).open(ALICE, _upload_id(3), "a", size, stream=True)
    upload.write(1, memoryview(data))
    assert upload.writing is not None and not upload.writing.done()  # queued, not written
    assert upload.part.stat().st_size == 0
    thread, out = _in_thread(getattr(upload, read))
    held.let_go()
    thread.join()
    if read == "digest":
        assert out == [file_digest(data).digest()]
    else:
        assert fsyncs == [size]  # the data was in the file when it was synced
        assert upload.part.read_bytes() == data
    upload.discard()


def test_a_streamed_file_just_under_the_threshold_is_written_at_once(
    tmp_path: Path, held: HeldWriter
) -> None:
    size = partial_uploads.WRITE_BEHIND_FROM - 1
    upload = PartialStore(tmp_path).open(ALICE, _upload_id(3), "a", size, stream=True)
    upload.write(1, bytes(size))  # the writer thread is held: written here, or never
    assert upload.writing is None
    assert upload.part.stat().st_size == size
    upload.discard()


def test_a_streamed_upload_s_digest_is_the_one_asked_for(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, _upload_id(4), "a", 3, DigestAlgorithm.SHA256, stream=True)
    upload.write(1, b"abc")
    assert upload.digest() == hashlib.sha256(b"abc").digest()
    upload.discard()


def test_a_streamed_upload_the_disk_cannot_open_is_refused_and_left_free(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    directory = store.partial_dir / ALICE.hex()
    directory.mkdir(parents=True)
    (directory / (_upload_id(5).hex() + ".part")).mkdir()  # in the way of the file
    with pytest.raises(StorageError, match=r"^cannot open the upload: \[Errno 21\] Is a direct"):
        store.open(ALICE, _upload_id(5), "a", 3, stream=True)
    (directory / (_upload_id(5).hex() + ".part")).rmdir()
    store.open(ALICE, _upload_id(5), "a", 3, stream=True).discard()  # not busy


def test_a_streamed_upload_is_busy_while_open(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, _upload_id(6), "a", 3, stream=True)
    with pytest.raises(UploadBusy):
        store.open(ALICE, _upload_id(6), "a", 3, stream=True)
    upload.discard()


# --- a resumable upload's chunk, written in a thread ----------------------------------


def test_a_resumable_chunk_is_written_in_the_writer_thread(
    tmp_path: Path, held: HeldWriter
) -> None:
    upload = PartialStore(tmp_path).open(ALICE, _upload_id(7), "a", 5)
    upload.write(1, b"hello")  # returns with the chunk still queued
    assert (upload.written_chunks, upload.received) == (1, 5)
    held.let_go()
    assert upload.finish() == file_digest(b"hello").digest()
    upload.discard()


@pytest.mark.parametrize("read", ["digest", "sync_data", "finish"])
def test_reading_an_upload_waits_for_its_chunk_being_written(
    tmp_path: Path, held: HeldWriter, fsyncs: list[int], read: str
) -> None:
    """The digest and the sync cover the chunk written in the background: neither is
    taken before that write is done."""
    upload = PartialStore(tmp_path).open(ALICE, _upload_id(8), "a", 5)
    upload.write(1, b"hello")
    thread, out = _in_thread(getattr(upload, read))
    held.let_go()
    thread.join()
    if read != "sync_data":
        assert out == [file_digest(b"hello").digest()]
    if read != "digest":
        assert fsyncs == [5]  # the data was in the file when it was synced
    upload.discard()


@needs_fds
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_closing_an_upload_whose_write_failed_raises_nothing_and_frees_it(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    before = _open_fds()
    upload = store.open(ALICE, _upload_id(9), "a", 2 * CHUNK, stream=False)
    upload._handle.close()  # type: ignore[union-attr]
    upload._handle = open("/dev/full", "wb")  # noqa: SIM115 - closed by the upload
    upload.write(1, bytes(CHUNK))  # fails in the background
    upload.close_handle()  # the group's close: the failure is the discard's business
    assert _open_fds() == before
    upload.close_handle()  # twice is harmless
    upload.discard()
    assert store.usage() == (0, 0)
    store.open(ALICE, _upload_id(9), "a", 2 * CHUNK).discard()  # not busy


@needs_fds
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_suspending_an_upload_whose_write_failed_raises_nothing(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    before = _open_fds()
    upload = store.open(ALICE, _upload_id(10), "a", 2 * CHUNK)
    upload._handle.close()  # type: ignore[union-attr]
    upload._handle = open("/dev/full", "wb")  # noqa: SIM115 - closed by the upload
    upload.write(1, bytes(CHUNK))
    upload.suspend()
    assert _open_fds() == before
    store.open(ALICE, _upload_id(10), "a", 2 * CHUNK).discard()  # not busy


# --- a group: syncs started in batches, files stored together -------------------------


def _streamed(store: PartialStore, count: int, first: int = 20) -> list[PartialUpload]:
    uploads = []
    for n in range(count):
        upload = store.open(ALICE, _upload_id(first + n), f"d/f{n}", 2, stream=True)
        upload.write(1, b"%02d" % n)
        uploads.append(upload)
    return uploads


@needs_fds
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("started", [False, True])
def test_a_group_is_synced_stored_and_forgotten(
    tmp_path: Path, fsyncs: list[int], count: int, started: bool
) -> None:
    store = PartialStore(tmp_path)
    before = _open_fds()
    uploads = _streamed(store, count)
    syncing = [start_syncs(uploads)] if started else []
    paths = commit_group(store.client_root(ALICE), uploads, syncing)
    root = store.client_root(ALICE)
    assert paths == [root / "d" / f"f{n}" for n in range(count)]
    assert [path.read_bytes() for path in paths] == [b"%02d" % n for n in range(count)]
    assert fsyncs == [2] * count  # each file's data, once
    assert _open_fds() == before  # every descriptor closed
    assert store.usage() == (0, 0)
    assert list((store.partial_dir / ALICE.hex()).iterdir()) == []
    store.open(ALICE, _upload_id(20), "again", 1, stream=True).discard()  # not busy


@needs_fds
def test_started_syncs_close_each_file_once_it_is_durable(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    """A group of the wide window holds 128 files: none keeps its descriptor while it
    waits for the rest of its group."""
    store = PartialStore(tmp_path)
    before = _open_fds()
    uploads = _streamed(store, 3)
    assert _open_fds() == before + 3
    start_syncs(uploads).result()
    assert fsyncs == [2, 2, 2]
    assert _open_fds() == before
    assert store.usage()[0] == 3  # still held, not yet stored
    for upload in uploads:
        upload.discard()


def test_a_sync_started_in_a_batch_that_fails_fails_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PartialStore(tmp_path)
    first, second = _streamed(store, 1, first=30), _streamed(store, 2, first=31)

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    syncing = [start_syncs(first), start_syncs(second)]
    with pytest.raises(StorageError, match=r"^cannot sync: \[Errno 5\] Input/output error$"):
        commit_group(store.client_root(ALICE), [*first, *second], syncing)
    assert all(future.done() for future in syncing)  # none still running on its files
    assert not store.client_root(ALICE).exists()  # nothing stored
    for upload in [*first, *second]:
        upload.discard()
    assert store.usage() == (0, 0)


@pytest.mark.parametrize("count", [1, 3])
def test_a_group_whose_sync_fails_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    store = PartialStore(tmp_path)
    uploads = _streamed(store, count, first=40)

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match=r"^cannot sync: \[Errno 5\] Input/output error$"):
        commit_group(store.client_root(ALICE), uploads)
    assert not store.client_root(ALICE).exists()
    for upload in uploads:
        upload.discard()


def test_a_streamed_upload_s_unwritten_bytes_are_promised_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads must not count the same free bytes (``room``): a streamed one's
    unwritten bytes are promised to it as a resumable one's are."""
    free = os.statvfs(tmp_path)
    monkeypatch.setattr(os, "statvfs", lambda path: free)  # the machine's others write too
    store = PartialStore(tmp_path)
    space = store.room(0)
    other = store.open(ALICE, _upload_id(50), "a", 1, stream=True)
    upload = store.open(ALICE, _upload_id(51), "b", 1000, stream=True)
    upload.write(1, bytes(400))
    assert store.room(0, asking=other) == space - 600
    assert store.room(0, asking=upload) == space - 1
    for each in (other, upload):
        each.discard()
    assert store.room(0) == space


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("size", [5, CHUNK])
def test_an_upload_the_disk_refused_is_discarded_without_an_error(
    tmp_path: Path, size: int
) -> None:
    """A chunk's write failed in the background (a whole chunk) or its bytes wait in the
    file's buffer and cannot be flushed (a small last chunk): the connection broke, and
    dropping the upload must not raise on its way out."""
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, _upload_id(60), "a", CHUNK + size)
    upload._handle.close()  # type: ignore[union-attr]
    upload._handle = open("/dev/full", "wb")  # noqa: SIM115 - closed by the upload
    upload.write(1, bytes(size))
    upload.discard()
    assert not upload.part.exists() and not upload.sidecar.exists()
    store.open(ALICE, _upload_id(60), "a", CHUNK + size).discard()  # not busy
