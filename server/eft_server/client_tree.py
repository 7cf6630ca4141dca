"""A version-4 client's stored files: relative paths under its own directory, safely.

Names arrive checked (``eft_protocol.v4.paths``: no ``..``, no ``.``, no empty or
absolute components), so joining them under ``v4/files/<client id hex>/`` cannot climb
out by spelling. What could still lead out is the disk itself: a symbolic link where a
folder of the path is expected (planted by an operator's mistake, a restore, another
program) would make ``root / "a/b/c"`` land wherever it points. So the path is walked
one component at a time with directory file descriptors: each folder is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the one before (``openat``), a missing one is
made with ``mkdirat`` and then opened the same way, and the file is moved in with
``renameat`` into the last folder's descriptor. A symlink or a file in the way is
refused (``NameInTheWay``), never followed; a rename over a symlink replaces the link
itself, it does not write through it.

Durability: each folder made is synced into its parent (its entry), and the folder
the file lands in is synced after the rename, before the 1604 that says it is stored.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from eft_protocol.v4.paths import components

from .storage import DIRECTORY_MODE, StorageError, make_directories

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)


class NameInTheWay(StorageError):
    """Something on the server's disk blocks the name: a file where one of its folders
    should be, a folder where the file should be, or a symbolic link."""


def in_the_way(root: Path, name: str) -> str | None:
    """Why ``name`` cannot be stored under ``root`` as things are, or None. Looks only:
    checked before any data comes, so the client is told at once (and checked again,
    for real, at the commit)."""
    return FolderCheck(root).in_the_way(name)


_MISSING = "missing"


class GroupNames:
    """The names a connection's group of files (STREAM, PACK) will store. The disk shows
    none of them until the group commits, so a file ``a`` and a file ``a/b`` in one group
    both looked free, and the commit then failed (error 7, the group lost, ``a`` left
    renamed without its registry row). Asked with the disk's check, this refuses the
    later one before its data, with error 2 like any name in the way."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()

    def in_the_way(self, name: str) -> str | None:
        if name in self._folders:
            return f"{name} is a folder of another file sent with it"
        parts = components(name)
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in self._files:
                return f"{folder} is a file sent with it, not a folder"
        return None

    def add(self, name: str) -> None:
        self._files.add(name)
        parts = components(name)
        self._folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))

    def clear(self) -> None:
        self._files.clear()
        self._folders.clear()


class FolderCheck:
    """``in_the_way`` for many names under one root, each folder of their paths looked at
    once: a pack's files mostly share their folders (issue 25). Only for names checked
    together; what is on the disk may change after (the commit checks again, for real)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._folders: dict[str, str | None] = {}  # a reason, None (a folder), _MISSING

    def in_the_way(self, name: str) -> str | None:
        parts = components(name)
        for depth in range(len(parts) - 1):
            shown = "/".join(parts[: depth + 1])
            if shown not in self._folders:
                self._folders[shown] = _look(self._root, parts, depth)
            verdict = self._folders[shown]
            if verdict == _MISSING:
                return None  # made when the file is stored; nothing below it exists
            if verdict is not None:
                return verdict
        verdict = _look(self._root, parts, len(parts) - 1)
        return None if verdict == _MISSING else verdict


def _look(root: Path, parts: list[str], depth: int) -> str | None:
    """What ``parts[: depth + 1]`` is on the disk: _MISSING, a reason it is in the way,
    or None (a folder where a folder should be, a file or nothing where the file goes)."""
    shown = "/".join(parts[: depth + 1])
    try:
        mode = os.lstat(root.joinpath(*parts[: depth + 1])).st_mode
    except FileNotFoundError:
        return _MISSING
    except OSError as exc:
        return f"{shown} cannot be used: {exc.strerror}"
    last = depth == len(parts) - 1
    if stat.S_ISLNK(mode):
        return f"{shown} is a symbolic link on the server"
    if not last and not stat.S_ISDIR(mode):
        return f"{shown} is a file on the server, not a folder"
    if last and stat.S_ISDIR(mode):
        return f"{shown} is a folder on the server"
    return None


def store(root: Path, name: str, source: Path) -> Path:
    """Move ``source`` to ``name`` under ``root``, making its folders, durably; the
    path stored. Raises ``NameInTheWay`` or ``StorageError``. Blocking."""
    parts = components(name)
    make_directories(root)
    with _folder(root, parts[:-1]) as folder:
        _rename_into(folder, source, parts[-1], name)
        _sync(folder, name)
    return root.joinpath(*parts)


def make_folder(root: Path, name: str) -> None:
    """Make the folder ``name`` and its parents under ``root``, none followed, each made
    one synced into its parent. Raises ``NameInTheWay`` or ``StorageError``. Blocking."""
    make_directories(root)
    with _folder(root, components(name)):
        pass


def store_group(root: Path, files: list[tuple[str, Path]]) -> list[Path]:
    """``store`` for several files whose data is already durable, with one sync per
    folder touched (after all the renames) instead of one per file: a group of small
    files commits with a few syncs. Each folder's descriptor is opened once per group.
    Raises like ``store``; the files renamed before a failure stay (never answered,
    they are sent again and replaced atomically). Blocking."""
    make_directories(root)
    stored: list[Path] = []
    with contextlib.ExitStack() as stack:
        folders: dict[tuple[str, ...], int] = {}
        for name, source in files:
            parts = components(name)
            key = tuple(parts[:-1])
            folder = folders.get(key)
            if folder is None:
                folder = folders[key] = stack.enter_context(_folder(root, parts[:-1]))
            _rename_into(folder, source, parts[-1], name)
            stored.append(root.joinpath(*parts))
        for key, folder in folders.items():
            _sync(folder, "/".join(key) or ".")
    return stored


@contextlib.contextmanager
def _folder(root: Path, parts: list[str]) -> Iterator[int]:
    """The descriptor of ``root/parts...``, each made if missing, none followed."""
    try:
        fd = os.open(root, _DIRECTORY_FLAGS)
    except OSError as exc:
        raise StorageError(f"cannot open the client's folder: {exc.strerror}") from exc
    try:
        for depth, part in enumerate(parts):
            child = _open_or_make(fd, part, "/".join(parts[: depth + 1]))
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)  # exactly once: a number closed twice may be another thread's file


def _open_or_make(parent: int, part: str, shown: str) -> int:
    for _ in range(2):  # made by us, or by a concurrent upload between the two calls
        try:
            return os.open(part, _DIRECTORY_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink or a file
                raise NameInTheWay(f"{shown} is not a folder on the server") from exc
            raise StorageError(f"cannot open {shown}: {exc.strerror}") from exc
        try:
            os.mkdir(part, DIRECTORY_MODE, dir_fd=parent)
            _sync(parent, shown)  # the new folder's entry survives a power loss
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot make {shown}: {exc.strerror}") from exc
    raise StorageError(f"cannot open {shown}")


def _rename_into(folder: int, source: Path, last: str, name: str) -> None:
    """``source`` renamed to ``last`` in the open ``folder``, a failure named for ``name``."""
    try:
        os.replace(source, last, dst_dir_fd=folder)
    except IsADirectoryError as exc:
        raise NameInTheWay(f"{name} is a folder on the server") from exc
    except OSError as exc:
        raise StorageError(f"cannot store {name}: {exc.strerror}") from exc


def _sync(fd: int, shown: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(f"cannot sync the folder of {shown}: {exc.strerror}") from exc
