"""Version-4 uploads on disk: resumable partial files, then an atomic commit.

Layout under the data directory (apart from version 3's, so neither version can reach
the other's files)::

    v4/files/<client id hex>/<name>               committed files
    v4/partial/<client id hex>/<upload id>.part   bytes received so far
    v4/partial/<client id hex>/<upload id>.json   name, size, chunks known durable

Chunks arrive authenticated and whole, so every chunk written is good. Every
``SYNC_EVERY`` chunks the file is synced in the background (sync_behind.py), and when
that is done the sidecar says how many chunks are durable; a broken connection syncs
at once. A resume starts after the durable chunks. The digest of a
resumed upload is rebuilt by reading its prefix back.

Unfinished uploads are bounded by ``PartialQuota``: per client and server-wide, in
uploads and in bytes. Each time an upload opens or is suspended, the oldest (least
recently written) uploads that no connection holds are dropped until every limit is
met again. A dropped upload's client is not told at once (it may never come back);
when it resumes, it finds nothing kept and is told to start at chunk 1 (1604), which
it reports (docs/PROTOCOL-v4.md section 8).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import structlog

from eft_protocol.v4.file_digest import DigestAlgorithm, FileHasher, hasher_for
from eft_protocol.v4.records import CHUNK, chunk_count

from . import client_tree
from .config import ServerConfig
from .storage import FILE_MODE, StorageError, make_directories
from .sync_behind import SyncBehind

SYNC_EVERY = 32  # chunks (32 MiB): what a crash can cost a resume at most
#: A streamed file this large is written and hashed in a writer thread, not on the
#: event loop: its write and BLAKE3 (~0.1 ms for 256 KiB on tmpfs) then outweigh the
#: thread's round trip. Smaller ones, and packed files, are written at once.
WRITE_BEHIND_FROM = 256 * 1024


GiB = 1 << 30


class UploadBusy(StorageError):
    """Another connection is still writing this upload (it has not noticed its break)."""


@dataclass(frozen=True)
class PartialQuota:
    """Limits on unfinished uploads kept on disk (open ones count, but only idle ones
    are dropped)."""

    uploads_per_client: int = 16
    bytes_per_client: int = 16 * GiB
    uploads: int = 4096
    bytes: int = 256 * GiB


def partial_quota(config: ServerConfig) -> PartialQuota:
    return PartialQuota(
        uploads_per_client=config.max_partial_uploads_per_client,
        bytes_per_client=config.max_partial_bytes_per_client,
        uploads=config.max_partial_uploads,
        bytes=config.max_partial_bytes,
    )


#: Why an upload was dropped: the limit it broke (the label of the metric).
DROP_REASONS = ("client_uploads", "client_bytes", "server_uploads", "server_bytes")

#: Told of every drop: (reason, bytes dropped).
OnDrop = Callable[[str, int], None]


@dataclass
class _Kept:
    client: str  # the client id in hex (the directory's name)
    size: int  # bytes received
    used: float  # when it was last opened, written or suspended


class _KeptIndex:
    """The unfinished uploads on disk by .part, also grouped by client, with their
    counts and bytes kept as running totals: one client's check touches only its own
    uploads, and the server's needs no scan while its limits hold (issue 22: a scan of
    every upload at each open made a batch of N sessions cost N²). Each client's group
    keeps the order of the whole, so sorting by ``used`` breaks ties as a sort of the
    whole filtered by client did."""

    def __init__(self) -> None:
        self.entries: dict[Path, _Kept] = {}
        self.by_client: dict[str, dict[Path, _Kept]] = {}
        self.client_bytes: dict[str, int] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def client_count(self, client: str) -> int:
        return len(self.by_client.get(client, ()))

    def put(self, part: Path, entry: _Kept) -> None:
        old = self.entries.get(part)
        grown = entry.size - (old.size if old is not None else 0)
        self.entries[part] = entry  # an existing key keeps its place (and its order)
        self.by_client.setdefault(entry.client, {})[part] = entry
        self.client_bytes[entry.client] = self.client_bytes.get(entry.client, 0) + grown
        self.bytes += grown

    def pop(self, part: Path) -> None:
        entry = self.entries.pop(part, None)
        if entry is None:
            return
        mine = self.by_client[entry.client]
        del mine[part]
        if mine:
            self.client_bytes[entry.client] -= entry.size
        else:
            del self.by_client[entry.client], self.client_bytes[entry.client]
        self.bytes -= entry.size


class PartialStore:
    def __init__(
        self,
        data_dir: Path,
        quota: PartialQuota | None = None,
        on_drop: OnDrop | None = None,
    ) -> None:
        self.files_dir = data_dir / "v4" / "files"
        self.partial_dir = data_dir / "v4" / "partial"
        make_directories(self.files_dir)
        make_directories(self.partial_dir)
        self.quota = quota or PartialQuota()
        self._on_drop = on_drop
        self._open: set[Path] = set()  # uploads a connection holds right now
        # Every unfinished upload on disk, by its .part (read from the disk when first
        # needed). Threads (asyncio.to_thread) open and suspend uploads: one lock.
        self._lock = threading.Lock()
        self._kept: _KeptIndex | None = None
        # Those opened, for ``room``, and the sum of what they have yet to write, kept
        # as each writes (not summed at each open: issue 22). Their own lock, taken
        # inside ``_lock`` if at all and only ever for a few operations: a chunk's
        # write on the event loop never waits for a quota sweep's file removals.
        self._holding = threading.Lock()
        self._holders: dict[Path, PartialUpload] = {}
        self._promised = 0
        self.log: Any = structlog.get_logger("eft.partial_uploads")

    def client_root(self, client_id: bytes) -> Path:
        """The client's own folder: every name it sends is a path under it."""
        return self.files_dir / client_id.hex()

    def final_path(self, client_id: bytes, name: str) -> Path:
        return self.client_root(client_id).joinpath(*name.split("/"))

    def in_the_way(self, client_id: bytes, name: str) -> str | None:
        """Why ``name`` cannot be stored for this client (``client_tree.in_the_way``)."""
        return client_tree.in_the_way(self.client_root(client_id), name)

    def room(self, keep_free: int, asking: PartialUpload | None = None) -> int:
        """Bytes ``asking`` may still take: the file system's free space for us, less
        ``keep_free`` and less what the other open uploads have yet to write (so two
        uploads cannot each count the same free bytes). Partial files land here first,
        and a commit is a rename on the same file system."""
        stats = os.statvfs(self.partial_dir)
        with self._holding:
            promised = self._promised
            if asking is not None and self._holders.get(asking.part) is asking:
                promised -= asking.left
        return stats.f_bavail * stats.f_frsize - keep_free - promised

    def open(
        self,
        client_id: bytes,
        upload_id: bytes,
        name: str,
        size: int,
        digest_algorithm: int = DigestAlgorithm.BLAKE3,
        *,
        stream: bool = False,
    ) -> PartialUpload:
        """The upload to continue: resumed if name and size match what is kept. With
        ``stream`` (a streamed file, docs/PROTOCOL-v4.md section 8.1) it is always a
        fresh one, with no progress record: its client keeps nothing to resume it."""
        directory = self.partial_dir / client_id.hex()
        try:
            make_directories(directory)
        except OSError as exc:
            raise StorageError(f"cannot open the upload: {exc}") from exc
        base = directory / upload_id.hex()
        part, sidecar = base.with_suffix(".part"), base.with_suffix(".json")
        with self._lock:
            if part in self._open:
                raise UploadBusy("this upload is still open on another connection")
            self._open.add(part)  # held from here: the quota never drops it under us
        try:
            if stream:
                upload = self._open_fresh(part, sidecar, name, size, digest_algorithm)
            else:
                upload = self._open_reserved(part, sidecar, name, size, digest_algorithm)
        except BaseException:
            with self._lock:
                self._open.discard(part)
                self._kept = None  # kept or removed, as it failed: read the disk again
            raise
        self._enforce(client_id.hex())
        return upload

    def _open_fresh(
        self, part: Path, sidecar: Path, name: str, size: int, digest_algorithm: int
    ) -> PartialUpload:
        try:
            handle = _open_private(part, truncate=True)
        except OSError as exc:
            raise StorageError(f"cannot open the upload: {exc}") from exc
        return PartialUpload(
            part,
            sidecar,
            name=name,
            size=size,
            handle=handle,
            digest=hasher_for(digest_algorithm),
            durable_chunks=0,
            store=self,
            record=False,
        )

    def _open_reserved(
        self, part: Path, sidecar: Path, name: str, size: int, digest_algorithm: int
    ) -> PartialUpload:
        durable = 0
        try:
            state = json.loads(sidecar.read_text())
            if state.get("name") == name and state.get("size") == size and part.exists():
                durable = int(state["durable_chunks"])
        except (OSError, ValueError, KeyError):
            durable = 0
        # The final chunk is always sent again (only it completes a file), so a partial
        # upload that holds every chunk resumes before its last one.
        durable = min(durable, chunk_count(size) - 1)
        try:
            # A record may claim more than the file holds (a crash between a sync and
            # its record is harmless, but a file copied or cut short is not): trust only
            # whole chunks that are there.
            durable = min(durable, part.stat().st_size // CHUNK) if durable else 0
            handle = _open_private(part, truncate=not durable)
        except OSError as exc:
            raise StorageError(f"cannot open the upload: {exc}") from exc
        try:
            handle.truncate(durable * CHUNK)
            # Read back whatever the algorithm: an upload resumed with another one still
            # gets the digest it asks for.
            digest = hasher_for(digest_algorithm)
            left = durable * CHUNK
            while left:
                block = handle.read(min(left, CHUNK))
                if not block:
                    raise StorageError("the partial upload is shorter than its record")
                digest.update(block)
                left -= len(block)
        except (OSError, StorageError) as exc:
            handle.close()
            if not durable:
                with contextlib.suppress(OSError):
                    part.unlink(missing_ok=True)
            raise StorageError(f"cannot open the upload: {exc}") from exc
        upload = PartialUpload(
            part,
            sidecar,
            name=name,
            size=size,
            handle=handle,
            digest=digest,
            durable_chunks=durable,
            store=self,
        )
        try:
            upload.record_progress()
        except StorageError:
            upload._close()  # no longer open: a later attempt must not find it busy
            if not durable:  # a fresh upload: nothing of it is worth keeping
                upload.discard()
            raise
        return upload

    # --- the quota ------------------------------------------------------------------

    def _index(self) -> _KeptIndex:
        """The unfinished uploads on disk (the lock is held)."""
        if self._kept is None:
            self._kept = _KeptIndex()
            for sidecar in self.partial_dir.glob("*/*.json"):
                part = sidecar.with_suffix(".part")
                with contextlib.suppress(OSError):
                    used = sidecar.stat().st_mtime
                    self._kept.put(part, _Kept(part.parent.name, part.stat().st_size, used))
        return self._kept

    def _forget(self, part: Path) -> None:
        if self._kept is not None:
            self._kept.pop(part)

    def hold(self, upload: PartialUpload) -> None:
        with self._holding:
            self._unhold(upload.part)  # none in practice: ``open`` refuses a busy one
            self._holders[upload.part] = upload
            self._promised += upload.left

    def _unhold(self, part: Path) -> None:
        """(``_holding`` is held.)"""
        upload = self._holders.pop(part, None)
        if upload is not None:
            self._promised -= upload.left

    def wrote(self, upload: PartialUpload, count: int) -> None:
        """``upload`` wrote ``count`` more bytes: it has that much less to write."""
        with self._holding:
            before = upload.left
            upload.received += count
            if self._holders.get(upload.part) is upload:
                self._promised += upload.left - before

    def touch(self, part: Path, size: int) -> None:
        """An open upload wrote (``size`` bytes so far) or was suspended: it is the
        most recently used."""
        with self._lock:
            self._index().put(part, _Kept(part.parent.name, size, time.time()))

    def forget(self, part: Path) -> None:
        """Committed or discarded: no longer an unfinished upload."""
        with self._lock:
            with self._holding:  # let go of before ``_open``: a new opener finds none
                self._unhold(part)
            self._open.discard(part)
            self._forget(part)

    def release(self, part: Path) -> None:
        """Suspended: kept for a resume, no longer held by a connection."""
        with self._lock:
            with self._holding:
                self._unhold(part)
            self._open.discard(part)

    def usage(self) -> tuple[int, int]:
        """Unfinished uploads on disk and their bytes."""
        with self._lock:
            kept = self._index()
            return len(kept), kept.bytes

    def enforce_quota(self, client: str | None = None, keep: Path | None = None) -> int:
        """Drop the oldest idle uploads until the limits hold; returns how many. With
        ``client`` (hex), only that client's limits and the server's are checked;
        ``keep`` (a .part) is spared like an open upload: the one just suspended stays
        resumable even if it alone breaks a limit (the next upload's turn drops it)."""
        return self._enforce(client, keep)

    def _enforce(self, client: str | None, keep: Path | None = None) -> int:
        quota = self.quota
        dropped: list[tuple[Path, str, int]] = []
        with self._lock:
            kept = self._index()
            clients = [client] if client is not None else list(kept.by_client)
            for name in clients:
                count, size = kept.client_count(name), kept.client_bytes.get(name, 0)
                if count <= quota.uploads_per_client and size <= quota.bytes_per_client:
                    continue  # within its limits: nothing to sort
                mine = sorted(kept.by_client[name].items(), key=lambda i: i[1].used)
                for part, entry in mine:
                    if count <= quota.uploads_per_client and size <= quota.bytes_per_client:
                        break
                    if part in self._open or part == keep:
                        continue
                    reason = (
                        "client_uploads" if count > quota.uploads_per_client else "client_bytes"
                    )
                    dropped.append((part, reason, entry.size))
                    count, size = count - 1, size - entry.size
                    kept.pop(part)
            count, size = len(kept), kept.bytes
            if count > quota.uploads or size > quota.bytes:
                for part, entry in sorted(kept.entries.items(), key=lambda i: i[1].used):
                    if count <= quota.uploads and size <= quota.bytes:
                        break
                    if part in self._open or part == keep:
                        continue
                    reason = "server_uploads" if count > quota.uploads else "server_bytes"
                    dropped.append((part, reason, entry.size))
                    count, size = count - 1, size - entry.size
                    kept.pop(part)
            for part, _reason, _size in dropped:  # under the lock: nobody opens it meanwhile
                _remove_upload(part)
        for part, reason, size in dropped:
            self.log.warning(
                "partial_upload_dropped",
                client_id=part.parent.name,
                upload_id=part.stem,
                bytes=size,
                reason=reason,
            )
            if self._on_drop is not None:
                self._on_drop(reason, size)
        return len(dropped)

    def remove_leftovers(self) -> int:
        """At start-up (nothing is open): what no resume can use. A progress record
        half-written (``.json.tmp``), an upload file without its record (the crash came
        between creating it and recording it), a record without its file."""
        removed = 0
        for path in self.partial_dir.glob("*/*"):
            keep = (path.suffix == ".part" and path.with_suffix(".json").exists()) or (
                path.suffix == ".json" and path.with_suffix(".part").exists()
            )
            if not keep and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        with self._lock:
            self._kept = None  # read again from what is left
        self._enforce(None)  # the limits may have been lowered since the last run
        return removed

    def remove_expired(self, ttl: float) -> int:
        """Partial uploads nobody resumed within ``ttl`` seconds."""
        cutoff = time.time() - ttl
        removed = 0
        for sidecar in self.partial_dir.glob("*/*.json"):
            with contextlib.suppress(OSError):
                if sidecar.stat().st_mtime < cutoff:
                    part = sidecar.with_suffix(".part")
                    with self._lock:
                        if part in self._open:
                            continue
                        self._forget(part)
                        part.unlink(missing_ok=True)
                        sidecar.unlink()
                    removed += 1
        return removed


class PartialUpload:
    def __init__(
        self,
        part: Path,
        sidecar: Path,
        *,
        name: str,
        size: int,
        handle: BinaryIO,
        digest: FileHasher,
        durable_chunks: int,
        store: PartialStore,
        record: bool = True,
    ) -> None:
        self.part, self.sidecar, self.name, self.size = part, sidecar, name, size
        self._store = store
        self._handle: BinaryIO | None = handle
        self._digest = digest
        #: Progress is recorded in the sidecar (not for a streamed upload: no resume).
        self._record = record
        self.durable_chunks = durable_chunks
        self.written_chunks = durable_chunks
        # Bytes in the .part (for the quota); grown by ``store.wrote``, which keeps the
        # store's sum of what its holders have yet to write.
        self.received = durable_chunks * CHUNK
        store.touch(part, self.received)
        store.hold(self)
        self._behind = SyncBehind(handle, every=SYNC_EVERY * CHUNK, synced=durable_chunks * CHUNK)
        #: A resumable upload's chunk being written and hashed by ``_WRITERS`` while the
        #: event loop receives the next one (at most one: ``_settle``).
        self._writing: concurrent.futures.Future[None] | None = None

    def write(self, index: int, data: bytes | memoryview) -> None:
        """Chunks come in order (the session checks); ``index`` starts at 1. A resumable
        upload's chunk, and a streamed file of at least ``WRITE_BEHIND_FROM`` bytes, is
        written and hashed in the background (``writing``): ``data`` must stay as it is
        until the next ``write`` (or ``sync_data``, ``digest``, closing) returns, and its
        write error is raised there."""
        assert self._handle is not None and index == self.written_chunks + 1
        self._settle()
        if self._record or len(data) >= WRITE_BEHIND_FROM:
            self._writing = _WRITERS.submit(self._write_chunk, data)
        else:  # a small streamed file: the thread's round trip would cost more
            self._write_chunk(data)
        self.written_chunks = index
        self._store.wrote(self, len(data))
        durable = self._behind.synced // CHUNK
        if durable > self.durable_chunks:
            self.durable_chunks = durable
            self.record_progress()

    @property
    def writing(self) -> concurrent.futures.Future[None] | None:
        """The chunk last given to ``write``, while a writer thread may still be writing
        and hashing it (its ``data`` still needed); None when it was written at once."""
        return self._writing

    def _write_chunk(self, data: bytes | memoryview) -> None:
        assert self._handle is not None
        try:
            self._handle.write(data)
            self._behind.wrote(len(data))
        except OSError as exc:
            raise StorageError(f"cannot write: {exc}") from exc
        self._digest.update(data)

    def _settle(self) -> None:
        """Wait for the chunk being written, if any; raises its ``StorageError``."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def sync(self) -> None:
        """Make what was written durable and say so in the sidecar. Blocking."""
        self.sync_data()
        self.durable_chunks = self.written_chunks
        self.record_progress()

    def record_progress(self) -> None:
        if not self._record:
            self._store.touch(self.part, self.received)
            return
        state = {"name": self.name, "size": self.size, "durable_chunks": self.durable_chunks}
        temp = self.sidecar.with_suffix(".json.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(state))
            os.replace(temp, self.sidecar)
        except OSError as exc:
            raise StorageError(f"cannot record progress: {exc}") from exc
        self._store.touch(self.part, self.received)

    def finish(self) -> bytes:
        """All chunks are in: sync, and return the file's digest. Blocking."""
        self.sync()
        return self._digest.digest()

    def digest(self) -> bytes:
        """The digest of what was written, nothing synced (a streamed file: its group
        syncs it, ``commit_group``)."""
        self._settle()
        return self._digest.digest()

    def sync_data(self) -> None:
        """The data durable, no progress record (the group's step). Blocking."""
        assert self._handle is not None
        self._settle()
        try:
            self._behind.wait()
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot sync: {exc}") from exc

    def suspend(self) -> None:
        """The connection broke: keep what arrived for a resume. Blocking."""
        if self._handle is None:
            return
        with contextlib.suppress(StorageError):
            self.sync()
        self._close()
        # Idle now, so it counts as droppable for the next upload, not for this check.
        self._store.enforce_quota(self.part.parent.name, keep=self.part)

    @property
    def left(self) -> int:
        """Bytes still to be written (what ``PartialStore.room`` keeps for it)."""
        return max(self.size - self.received, 0)

    def commit(self, root: Path, name: str) -> Path:
        """Move the finished file to ``name`` (a relative path) under the client's
        folder ``root``, atomically and durably (``client_tree.store``). Blocking."""
        self._close()
        final = client_tree.store(root, name, self.part)
        self.sidecar.unlink(missing_ok=True)
        self._store.forget(self.part)
        return final

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):  # what cannot go now, the sweep takes later
            for path in (self.part, self.sidecar, self.sidecar.with_suffix(".json.tmp")):
                path.unlink(missing_ok=True)
        self._store.forget(self.part)

    def close_handle(self) -> None:
        with contextlib.suppress(StorageError):  # discarded, or failed already
            self._settle()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _close(self) -> None:
        with contextlib.suppress(StorageError):  # discarded, or failed already
            self._settle()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        self._store.release(self.part)


#: Threads that write and hash resumable uploads' chunks (one chunk in flight per
#: upload), while the event loop receives and opens the next record: the file's write
#: and BLAKE3 release the GIL, so a server whose client leaves a core idle uses it.
#: Streamed files of ``WRITE_BEHIND_FROM`` bytes or more are written here too: with
#: many clients each sending one such file, the event loop's thread is the bound
#: (issue 22), and their writes and hashes were a seventh of it.
_WRITERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="eft-write")

#: Threads that sync a group's files at once: a disk (or its journal) takes several
#: syncs together for about the price of one.
SYNC_THREADS = 8
_SYNCERS = concurrent.futures.ThreadPoolExecutor(
    max_workers=SYNC_THREADS, thread_name_prefix="eft-sync"
)


T = TypeVar("T")


def on_sync_threads(task: Callable[[T], None], argument: T) -> concurrent.futures.Future[None]:
    """``task(argument)`` on the sync threads (``pack_store``'s files sync there too)."""
    return _SYNCERS.submit(task, argument)


def start_syncs(uploads: list[PartialUpload]) -> concurrent.futures.Future[None]:
    """Start making staged files' data durable at once, while the rest of their group
    arrives: ``commit_group`` then waits for what is still syncing, and a disk's
    journal commits overlap the receiving instead of following it. Several files a
    task (a group's share of the threads): a task a file woke a thread per small file,
    which cost the event loop more than the sync itself on a RAM disk (issue 25)."""
    return _SYNCERS.submit(_sync_and_close, list(uploads))


def _sync_and_close(uploads: list[PartialUpload]) -> None:
    """Staged files' data made durable, each descriptor closed at once: a group of
    ``WIDE_STREAM_WINDOW / 2`` files holds no descriptor per file while it waits."""
    for upload in uploads:
        upload.sync_data()
        upload.close_handle()


def commit_group(
    root: Path,
    uploads: list[PartialUpload],
    syncing: Sequence[concurrent.futures.Future[None]] = (),
) -> list[Path]:
    """Several finished uploads stored at once (group durability, docs/PROTOCOL-v4.md
    section 8.1): every file's data synced (in parallel; ``syncing``: already started
    by ``start_syncs``, covering every upload), every file renamed into its folder, then each
    folder touched synced once. Nothing is answered before this returns. Raises
    ``StorageError``; the caller discards what is left. Blocking."""
    if syncing:
        concurrent.futures.wait(syncing)  # all settled before any handle is closed
        for future in syncing:
            future.result()
    elif len(uploads) == 1:
        uploads[0].sync_data()
    else:
        for _ in _SYNCERS.map(PartialUpload.sync_data, uploads):
            pass
    for upload in uploads:  # closed but still held: no quota sweep may take it now
        upload.close_handle()
    paths = client_tree.store_group(root, [(upload.name, upload.part) for upload in uploads])
    for upload in uploads:
        upload._store.forget(upload.part)
    return paths


def _remove_upload(part: Path) -> None:
    with contextlib.suppress(OSError):  # what cannot go now, the sweep takes later
        for path in (part, part.with_suffix(".json"), part.with_suffix(".json.tmp")):
            path.unlink(missing_ok=True)


def _open_private(path: Path, *, truncate: bool) -> BinaryIO:
    """Open for reading and writing, created 0600 if missing (``open()`` takes no mode)."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return os.fdopen(os.open(path, flags, FILE_MODE), "r+b")
