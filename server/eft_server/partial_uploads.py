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
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import BinaryIO

from eft_protocol.v4.file_digest import FileHasher, file_digest
from eft_protocol.v4.records import CHUNK, chunk_count

from .storage import FILE_MODE, StorageError, _fsync_directory, make_directories
from .sync_behind import SyncBehind

SYNC_EVERY = 32  # chunks (32 MiB): what a crash can cost a resume at most


class UploadBusy(StorageError):
    """Another connection is still writing this upload (it has not noticed its break)."""


class PartialStore:
    def __init__(self, data_dir: Path) -> None:
        self.files_dir = data_dir / "v4" / "files"
        self.partial_dir = data_dir / "v4" / "partial"
        make_directories(self.files_dir)
        make_directories(self.partial_dir)
        self._open: set[Path] = set()  # uploads a connection holds right now

    def final_path(self, client_id: bytes, name: str) -> Path:
        return self.files_dir / client_id.hex() / name

    def open(self, client_id: bytes, upload_id: bytes, name: str, size: int) -> PartialUpload:
        """The upload to continue: resumed if name and size match what is kept."""
        directory = self.partial_dir / client_id.hex()
        try:
            make_directories(directory)
        except OSError as exc:
            raise StorageError(f"cannot open the upload: {exc}") from exc
        base = directory / upload_id.hex()
        part, sidecar = base.with_suffix(".part"), base.with_suffix(".json")
        if part in self._open:
            raise UploadBusy("this upload is still open on another connection")
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
            digest = file_digest()
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
            open_set=self._open,
        )
        self._open.add(part)
        try:
            upload.record_progress()
        except StorageError:
            upload._close()  # no longer open: a later attempt must not find it busy
            if not durable:  # a fresh upload: nothing of it is worth keeping
                upload.discard()
            raise
        return upload

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
        return removed

    def remove_expired(self, ttl: float) -> int:
        """Partial uploads nobody resumed within ``ttl`` seconds."""
        cutoff = time.time() - ttl
        removed = 0
        for sidecar in self.partial_dir.glob("*/*.json"):
            with contextlib.suppress(OSError):
                if sidecar.stat().st_mtime < cutoff:
                    sidecar.with_suffix(".part").unlink(missing_ok=True)
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
        open_set: set[Path],
    ) -> None:
        self.part, self.sidecar, self.name, self.size = part, sidecar, name, size
        self._open_set = open_set
        self._handle: BinaryIO | None = handle
        self._digest = digest
        self.durable_chunks = durable_chunks
        self.written_chunks = durable_chunks
        self._behind = SyncBehind(handle, every=SYNC_EVERY * CHUNK, synced=durable_chunks * CHUNK)

    def write(self, index: int, data: bytes | memoryview) -> None:
        """Chunks come in order (the session checks); ``index`` starts at 1."""
        assert self._handle is not None and index == self.written_chunks + 1
        try:
            self._handle.write(data)
            self._behind.wrote(len(data))
        except OSError as exc:
            raise StorageError(f"cannot write: {exc}") from exc
        self._digest.update(data)
        self.written_chunks = index
        durable = self._behind.synced // CHUNK
        if durable > self.durable_chunks:
            self.durable_chunks = durable
            self.record_progress()

    def sync(self) -> None:
        """Make what was written durable and say so in the sidecar. Blocking."""
        assert self._handle is not None
        try:
            self._behind.wait()
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot sync: {exc}") from exc
        self.durable_chunks = self.written_chunks
        self.record_progress()

    def record_progress(self) -> None:
        state = {"name": self.name, "size": self.size, "durable_chunks": self.durable_chunks}
        temp = self.sidecar.with_suffix(".json.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(state))
            os.replace(temp, self.sidecar)
        except OSError as exc:
            raise StorageError(f"cannot record progress: {exc}") from exc

    def finish(self) -> bytes:
        """All chunks are in: sync, and return the file's digest. Blocking."""
        self.sync()
        return self._digest.digest()

    def suspend(self) -> None:
        """The connection broke: keep what arrived for a resume. Blocking."""
        if self._handle is None:
            return
        with contextlib.suppress(StorageError):
            self.sync()
        self._close()

    def commit(self, final: Path) -> Path:
        """Move the finished file to its name, atomically and durably. Blocking."""
        self._close()
        try:
            make_directories(final.parent)
            os.replace(self.part, final)
            _fsync_directory(final.parent)
        except OSError as exc:
            raise StorageError(f"cannot store {final.name}: {exc}") from exc
        self.sidecar.unlink(missing_ok=True)
        return final

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):  # what cannot go now, the sweep takes later
            for path in (self.part, self.sidecar, self.sidecar.with_suffix(".json.tmp")):
                path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        self._open_set.discard(self.part)


def _open_private(path: Path, *, truncate: bool) -> BinaryIO:
    """Open for reading and writing, created 0600 if missing (``open()`` takes no mode)."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return os.fdopen(os.open(path, flags, FILE_MODE), "r+b")
