"""Files on disk: each client's own directory, temporary uploads, atomic commits.

Layout under the data directory::

    files/<client id hex>/<base name>   committed (confirmed by 900) files
    tmp/<random>.part                   uploads in progress, never under a final name

Everything here is the server's alone: directories are made 0700 and files 0600 (the
modes are given to each call, so no umask can widen them), and the data directory
itself is narrowed to 0700 at start-up (``secure_data_dir``).

A commit is: flush, fsync the temporary file, rename it over the final name, fsync the
directory. So a crash leaves either the old file or the new one under the name, never a
mix, and a temporary file never looks like a stored one. While an upload arrives, its
file is synced in the background every 32 MiB (sync_behind.py), so the commit's fsync
waits only for the tail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import BinaryIO

from .sync_behind import SyncBehind

TEMP_SUFFIX = ".part"
#: Modes of what the server makes: uploads are other people's files, the registry holds
#: their keys. A umask can only narrow these, never widen them.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


class StorageError(Exception):
    """The disk refused: full, read-only, or an I/O error."""

    @property
    def detail(self) -> str:
        """Why, for the client: the error's name, never a path."""
        cause = self.__cause__
        if isinstance(cause, OSError) and cause.errno:
            return f"{os.strerror(cause.errno)} ({errno.errorcode.get(cause.errno, '?')})"
        if isinstance(cause, sqlite3.Error):
            return "its registry refused the write"
        return "a storage error"


class FileStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"
        self.tmp_dir = data_dir / "tmp"
        make_directories(self.files_dir)
        make_directories(self.tmp_dir)

    def final_path(self, client_id: bytes, storage_name: str) -> Path:
        client_dir = self.files_dir / client_id.hex()
        path = client_dir / storage_name
        # storage_name is already a checked base name; this is the belt to its braces.
        if path.parent != client_dir or storage_name in ("", ".", ".."):
            raise StorageError(f"refusing to store {storage_name!r} outside its directory")
        return path

    def open_upload(self, client_id: bytes, storage_name: str) -> TempUpload:
        final = self.final_path(client_id, storage_name)
        temp = self.tmp_dir / f"{secrets.token_hex(12)}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            handle = os.fdopen(fd, "wb")
        except OSError as exc:
            raise StorageError(f"cannot create a temporary file: {exc}") from exc
        return TempUpload(temp, final, handle)

    def remove_temporary_files(self, older_than: float | None = None) -> int:
        """Remove orphaned uploads: all of them at start-up (nothing is in flight then),
        or those untouched for ``older_than`` seconds while running."""
        removed = 0
        cutoff = None if older_than is None else time.time() - older_than
        for path in self.tmp_dir.glob(f"*{TEMP_SUFFIX}"):
            try:
                if cutoff is not None and path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # finished or discarded meanwhile
            removed += 1
        return removed


class TempUpload:
    """One attempt's plaintext, on its way to ``final_path``."""

    def __init__(self, temp_path: Path, final_path: Path, handle: BinaryIO) -> None:
        self.temp_path = temp_path
        self.final_path = final_path
        self._handle: BinaryIO | None = handle
        self._behind = SyncBehind(handle)
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._handle is not None
        try:
            self._handle.write(data)
            self._behind.wrote(len(data))
        except OSError as exc:
            raise StorageError(f"cannot write: {exc}") from exc
        self.size += len(data)

    def commit(self) -> Path:
        """Make the file durable under its final name. Blocking: run it in a thread."""
        handle = self._handle
        assert handle is not None
        try:
            self._behind.wait()
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            self._handle = None
            make_directories(self.final_path.parent)
            os.replace(self.temp_path, self.final_path)
            _fsync_directory(self.final_path.parent)
        except OSError as exc:
            self.discard()
            raise StorageError(f"cannot store {self.final_path.name}: {exc}") from exc
        return self.final_path

    def discard(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):  # closing a file we delete: nothing to lose
                self._handle.close()
            self._handle = None
        with contextlib.suppress(OSError):  # what cannot go now, the sweep takes later
            self.temp_path.unlink(missing_ok=True)


def make_directories(path: Path) -> None:
    """``mkdir -p``, durably: each directory made is synced into its parent, so that a
    power loss cannot take a directory (and every file stored in it) away after a file
    in it was acknowledged. Directories already there cost one ``stat``."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # made meanwhile (another upload's commit): synced by its maker
        _fsync_directory(directory.parent)


def secure_data_dir(data_dir: Path) -> None:
    """Make the data directory (0700) or narrow one already there to 0700: the files in
    it are 0600 anyway, but their names (client ids, file names) are not for others."""
    make_directories(data_dir)
    if os.name == "posix":
        os.chmod(data_dir, DIRECTORY_MODE)


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it is not there (for files whose creator, such
    as SQLite, takes no mode: SQLite gives its -wal and -shm the database's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def _fsync_directory(path: Path) -> None:
    if os.name != "posix":
        return  # Windows has no directory handles to fsync; NTFS journals the rename
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
