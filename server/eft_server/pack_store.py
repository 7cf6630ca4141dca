"""A 904's files on the local disk: written as staged files of the connection's next
group (feature PACK, docs/PROTOCOL-v4.md section 8.2).

A pack's files are whole and small, and their digests were checked by the session, so
none of a resumable upload's machinery applies: no progress record, no upload id, no
hashing thread. Each file is written at once, on the event loop (a create and a write
of at most a few KiB on a local disk take microseconds, and a thread hop per file took
longer than the file did: issue 25; even one hop per pack cost about 4 % more server CPU
and wall time on 10,000 small files, session 13), into the client's folder of unfinished uploads
under a random name; its descriptor stays open until the group's sync threads have
synced it (``sync_and_close``), and the group renames it into place with
``client_tree.store_group``, as STREAM's files. A file left behind by a crash has no
progress record, so ``PartialStore.remove_leftovers`` deletes it at the next start.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from eft_protocol.v4.pack import PackedFile, Refusal
from eft_protocol.v4.records import ErrorCode

from . import client_tree
from .partial_uploads import PartialStore, on_sync_threads
from .storage import FILE_MODE, StorageError, make_directories

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@dataclass
class StagedFile:
    """A pack's file written under ``part``, waiting for its group."""

    name: str
    part: Path
    size: int
    digest: bytes
    digest_algorithm: int
    #: Open until synced (``sync_and_close``); -1 once closed.
    fd: int


def stage_pack(
    store: PartialStore,
    client_id: bytes,
    files: list[PackedFile],
    digest_algorithm: int,
    keep_free: int,
    *,
    group: client_tree.GroupNames,
) -> tuple[list[StagedFile], dict[int, Refusal]]:
    """Write ``files`` as staged files; the refused ones by file id (something in the way
    of the name, on the disk or in the ``group`` they join: error 2; no room left for
    it: error 8). Raises ``StorageError`` when the disk fails (the files written so far
    are removed first). The names staged are added to ``group``."""
    if not files:
        return [], {}
    directory = store.partial_dir / client_id.hex()
    root = store.client_root(client_id)
    staged: list[StagedFile] = []
    refused: dict[int, Refusal] = {}
    try:
        make_directories(directory)
        room = store.room(keep_free)
        folders = client_tree.FolderCheck(root)
        for file in files:
            conflict = group.in_the_way(file.name) or folders.in_the_way(file.name)
            size = len(file.data)
            if conflict is not None:
                refused[file.file_id] = Refusal(ErrorCode.BAD_FILE_NAME, conflict)
                continue
            if size > max(room, 0):  # an empty file always fits
                refused[file.file_id] = Refusal(
                    ErrorCode.NO_SPACE,
                    f"no space: the file needs {size} more bytes, the server has room "
                    f"for {max(room, 0)}",
                )
                continue
            room -= size
            part = directory / f"{secrets.token_hex(16)}.part"
            fd = os.open(part, _CREATE, FILE_MODE)
            staged.append(StagedFile(file.name, part, size, file.digest, digest_algorithm, fd))
            _write_all(fd, file.data)
            group.add(file.name)
    except OSError as exc:
        discard(staged)
        raise StorageError(f"cannot store a packed file: {exc.strerror or exc}") from exc
    return staged, refused


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def start_syncs(staged: list[StagedFile]) -> concurrent.futures.Future[None]:
    """Their data made durable (and their descriptors closed) on the sync threads,
    while the rest of the group arrives; ``commit`` waits for it."""
    return on_sync_threads(sync_and_close, list(staged))


def sync_and_close(staged: list[StagedFile]) -> None:
    """Each file's data synced, then its descriptor closed. Raises ``StorageError``
    (every descriptor closed all the same)."""
    failure: OSError | None = None
    for file in staged:
        if file.fd < 0:
            continue
        try:
            if failure is None:
                os.fsync(file.fd)
        except OSError as exc:
            failure = exc
        finally:
            os.close(file.fd)
            file.fd = -1
    if failure is not None:
        raise StorageError(f"cannot sync a packed file: {failure.strerror or failure}")


def commit(
    root: Path,
    staged: list[StagedFile],
    syncing: list[concurrent.futures.Future[None]],
) -> list[Path]:
    """The group's packed files, synced, renamed into place, their folders synced once
    each (``client_tree.store_group``): the paths stored. Raises ``StorageError``; the
    caller then discards what is left. Blocking."""
    concurrent.futures.wait(syncing)
    for future in syncing:
        future.result()
    sync_and_close(staged)  # any not started yet
    return client_tree.store_group(root, [(file.name, file.part) for file in staged])


def discard(staged: list[StagedFile]) -> None:
    """Never answered: removed (the client sends them again). Descriptors still open
    are closed first; call only when no sync runs on them."""
    for file in staged:
        if file.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(file.fd)
            file.fd = -1
        with contextlib.suppress(OSError):  # what cannot go now, the next start takes
            file.part.unlink(missing_ok=True)
