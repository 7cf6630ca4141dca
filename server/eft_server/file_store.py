"""The seam between the connections and where files go: a local directory or S3.

Two stores, one per protocol version's way of receiving a file:

- ``FileStore`` (version 3): an attempt streams into an ``Upload`` that becomes the
  file under its name only on ``commit`` (the client's 900), or vanishes on ``discard``;
- ``UnfinishedUploads`` (version 4): an upload that survives a broken connection
  (``suspend``) and continues where it stopped (``open`` again, ``durable_chunks``),
  committed only after the client's digest matched.

The local directory (``storage.py``, ``partial_uploads.py``) is the default; ``--store
s3://bucket/prefix`` selects ``s3_store.py``. Every method that may wait on a disk or
the network is a coroutine, so the connection awaits it and reads nothing meanwhile:
that is the backpressure that keeps a slow store from filling the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from .partial_uploads import PartialStore, PartialUpload
from .storage import FileStore as LocalDirectory
from .storage import TempUpload


class Upload(Protocol):
    """One version-3 attempt's plaintext on its way to the file's name."""

    async def write(self, data: bytes | memoryview) -> None: ...

    async def commit(self) -> str:
        """Durable under its name when this returns; the location, for the registry."""
        ...

    async def discard(self) -> None: ...


class FileStore(Protocol):
    #: Where committed version-3 files are on this machine, for start-up's reconcile
    #: with the registry; None when they are elsewhere (S3).
    local_files_dir: Path | None

    async def open_upload(self, client_id: bytes, storage_name: str) -> Upload: ...

    async def remove_temporary_files(self, older_than: float | None = None) -> int:
        """Attempts left behind by a crash: all at start-up, or those idle that long."""
        ...

    async def close(self) -> None: ...


class UnfinishedUpload(Protocol):
    """One version-4 upload, resumable after a break."""

    #: Chunks kept from earlier connections: the client resumes after them.
    durable_chunks: int

    async def write(self, index: int, data: bytes | memoryview) -> None: ...

    async def finish(self) -> bytes:
        """Every chunk is in: the file's digest, for the client to compare."""
        ...

    async def commit(self, client_id: bytes, name: str) -> str:
        """The digest matched: durable under its name when this returns."""
        ...

    async def suspend(self) -> None:
        """The connection broke: keep what arrived for a resume."""
        ...

    async def discard(self) -> None: ...


class UnfinishedUploads(Protocol):
    local_files_dir: Path | None

    async def open(
        self, client_id: bytes, upload_id: bytes, name: str, size: int, digest_algorithm: int
    ) -> UnfinishedUpload: ...

    async def measure(
        self, upload: UnfinishedUpload, client_id: bytes, name: str, keep_free: int
    ) -> tuple[int, str | None]:
        """What the session decides on before the data: the bytes ``upload`` may still
        take (``keep_free`` kept back), and why its name cannot be stored, if it can't."""
        ...

    async def remove_leftovers(self) -> int: ...

    async def remove_expired(self, ttl: float) -> int: ...

    def usage(self) -> tuple[int, int]:
        """Unfinished uploads kept and their bytes (a gauge's callback: no waiting)."""
        ...


# --- the local directory: the blocking implementations, run off the event loop --------


class LocalUpload:
    def __init__(self, temp: TempUpload) -> None:
        self._temp = temp

    async def write(self, data: bytes | memoryview) -> None:
        self._temp.write(data)  # buffered by the kernel: not worth a thread per piece

    async def commit(self) -> str:
        return str(await asyncio.to_thread(self._temp.commit))

    async def discard(self) -> None:
        self._temp.discard()


class LocalFileStore:
    def __init__(self, data_dir: Path) -> None:
        self.directory = LocalDirectory(data_dir)
        self.local_files_dir: Path | None = self.directory.files_dir

    async def open_upload(self, client_id: bytes, storage_name: str) -> Upload:
        return LocalUpload(self.directory.open_upload(client_id, storage_name))

    async def remove_temporary_files(self, older_than: float | None = None) -> int:
        return await asyncio.to_thread(self.directory.remove_temporary_files, older_than)

    async def close(self) -> None:
        return None


#: How long a chunk's write may hold the event loop waiting for the previous chunk's
#: thread before it awaits instead (seconds): a chunk's write and hash take about half
#: a millisecond on a quick disk.
BLOCK_FOR_A_WRITE_AT_MOST = 0.002


class LocalUnfinishedUpload:
    def __init__(self, partial: PartialUpload, store: PartialStore) -> None:
        self._partial = partial
        self._store = store
        self.durable_chunks = partial.durable_chunks

    @property
    def partial(self) -> PartialUpload:
        """The file on disk: streamed files are committed as a group (``commit_group``)."""
        return self._partial

    async def write(self, index: int, data: bytes | memoryview) -> None:
        writing = self._partial.writing
        if writing is not None and not writing.done():
            # The previous chunk is still in a writer thread. It is usually about to
            # be done (the thread and the loop take turns on a file's chunks), and a
            # short blocking wait costs less than a wake-up through the loop; but a
            # disk that takes longer must not hold the event loop, and every other
            # connection with it: then await. Its error is raised by the write below.
            try:
                writing.exception(timeout=BLOCK_FOR_A_WRITE_AT_MOST)
            except TimeoutError:
                await self._written()
        self._partial.write(index, data)

    async def streamed_digest(self) -> bytes:
        """A streamed file's digest, nothing synced (its group syncs it): once a large
        file's write in its thread is done, awaited without holding the event loop."""
        await self._written()
        return self._partial.digest()

    async def _written(self) -> None:
        """Await the chunk a writer thread may still be writing; its error is raised by
        what reads the upload next (``write``, ``digest``)."""
        writing = self._partial.writing
        if writing is not None and not writing.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(writing)

    async def finish(self) -> bytes:
        return await asyncio.to_thread(self._partial.finish)

    async def commit(self, client_id: bytes, name: str) -> str:
        root = self._store.client_root(client_id)
        return str(await asyncio.to_thread(self._partial.commit, root, name))

    async def suspend(self) -> None:
        await asyncio.to_thread(self._partial.suspend)

    async def discard(self) -> None:
        await asyncio.to_thread(self._partial.discard)


class LocalUnfinishedUploads:
    def __init__(self, partials: PartialStore) -> None:
        self.partials = partials
        self.local_files_dir: Path | None = partials.files_dir

    async def open(
        self, client_id: bytes, upload_id: bytes, name: str, size: int, digest_algorithm: int
    ) -> UnfinishedUpload:
        partial = await asyncio.to_thread(
            self.partials.open, client_id, upload_id, name, size, digest_algorithm
        )
        return LocalUnfinishedUpload(partial, self.partials)

    async def measure(
        self, upload: UnfinishedUpload, client_id: bytes, name: str, keep_free: int
    ) -> tuple[int, str | None]:
        asking = upload._partial if isinstance(upload, LocalUnfinishedUpload) else None

        def blocking() -> tuple[int, str | None]:  # statvfs, lstat
            room = self.partials.room(keep_free, asking=asking)
            return room, self.partials.in_the_way(client_id, name)

        return await asyncio.to_thread(blocking)

    async def remove_leftovers(self) -> int:
        return await asyncio.to_thread(self.partials.remove_leftovers)

    async def remove_expired(self, ttl: float) -> int:
        return await asyncio.to_thread(self.partials.remove_expired, ttl)

    def usage(self) -> tuple[int, int]:
        return self.partials.usage()
