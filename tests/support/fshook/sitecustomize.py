"""Test-only: record and fail a server process's storage calls. Never installed.

A test puts this directory first on ``PYTHONPATH`` and names a JSON file in
``EFT_TEST_FSHOOK``; Python imports ``sitecustomize`` at start-up, before the server,
so the server runs unchanged while its calls on paths under ``root`` go through here::

    {"root": "/…/data", "log": "/…/calls.jsonl",
     "faults": [{"op": "write", "path": "tmp/*.part", "errno": "ENOSPC",
                 "after": 2, "times": 1, "delay": 0.0}]}

Steps (``op``): ``open`` (a file created or opened for writing), ``write``, ``sync``
(fsync or fdatasync of a file), ``dirsync`` (of a directory), ``rename``, ``unlink``,
``mkdir``, ``registry`` (an INSERT, UPDATE or DELETE of the SQLite registry; SQLite's own
I/O is in C, out of Python's reach, so its refusal is raised where the statement runs, as
SQLite raises "database or disk is full"). A fault matches a step and a glob of the path
relative to ``root``; it lets ``after`` matching calls through, then fails the next
``times`` ones with ``errno`` (none: only slows them by ``delay`` seconds, or holds them
until the test lets them go: ``hold`` names a FIFO the call reads to its end, so the
test's opening it for writing returns once a call is held, and its closing lets it go). The file is
read again whenever it changes, so a test arms and disarms faults while the server runs.
Every call is appended to ``log`` as a JSON line before it is made (``fault`` lines say
what was injected), flushed at once: what a test reads after an answer arrived was done
before it.
"""

from __future__ import annotations

import builtins
import errno as errno_codes
import fnmatch
import io
import json
import os
import sqlite3
import stat
import threading
import time
from typing import Any

_CONFIG = os.environ.get("EFT_TEST_FSHOOK")
_lock = threading.Lock()
_state: dict[str, Any] = {"mtime": None, "root": None, "log": None, "faults": [], "counts": []}
_real_open = builtins.open
_real_os_open = os.open
_real_write = os.write
_real_fsync = os.fsync
_real_fdatasync = getattr(os, "fdatasync", os.fsync)
_real_replace = os.replace
_real_rename = os.rename
_real_unlink = os.unlink
_real_mkdir = os.mkdir
_real_connect = sqlite3.connect


def _reload() -> None:
    assert _CONFIG is not None
    try:
        mtime = os.stat(_CONFIG).st_mtime_ns
    except FileNotFoundError:
        return
    if mtime == _state["mtime"]:
        return
    with _real_open(_CONFIG) as handle:
        config = json.load(handle)
    _state.update(
        mtime=mtime,
        root=os.path.realpath(config["root"]),
        faults=config.get("faults", []),
        counts=[0] * len(config.get("faults", [])),
    )
    if config.get("log") and _state["log"] is None:
        _state["log"] = _real_os_open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _relative(path: Any) -> str | None:
    """``path`` relative to the root, or None when it is elsewhere (or not a path)."""
    if isinstance(path, int) or path is None:
        return None
    full = os.path.realpath(os.fsdecode(path))
    root = _state["root"]
    if root is None or not (full == root or full.startswith(root + os.sep)):
        return None
    return os.path.relpath(full, root)


def _fd_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _log(record: dict[str, Any]) -> None:
    if _state["log"] is not None:
        line = json.dumps({**record, "thread": threading.get_ident()}) + "\n"
        _real_write(_state["log"], line.encode())


def _step(op: str, path: Any, **fields: Any) -> None:
    """Log the call and raise or delay it if a fault says so."""
    with _lock:
        _reload()
        relative = _relative(path)
        if relative is None:
            return
        _log({"op": op, "path": relative, **fields})
        delay, error, hold = 0.0, None, None
        for index, fault in enumerate(_state["faults"]):
            if fault["op"] != op or not fnmatch.fnmatch(relative, fault.get("path", "*")):
                continue
            _state["counts"][index] += 1
            seen = _state["counts"][index]
            after, times = fault.get("after", 0), fault.get("times", 1)
            if not after < seen <= after + times:
                continue
            delay = max(delay, float(fault.get("delay", 0.0)))
            hold = fault.get("hold")
            if fault.get("errno"):
                error = getattr(errno_codes, fault["errno"])
            _log({"op": "fault", "step": op, "path": relative, "errno": fault.get("errno")})
            break
    if delay:
        time.sleep(delay)
    if hold:
        with _real_open(hold, "rb") as fifo:
            fifo.read()
    if error is not None:
        raise OSError(error, os.strerror(error), os.fsdecode(path))


class _File:
    """A file opened under the root for writing: its writes are steps. Everything else
    is the real file's."""

    def __init__(self, inner: Any, path: Any) -> None:
        self._inner, self._path = inner, path

    def write(self, data: Any) -> int:
        size = len(data) if isinstance(data, str) else memoryview(data).nbytes
        _step("write", self._path, size=size)
        written: int = self._inner.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def _open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    writing = any(flag in mode for flag in "wax+")
    if isinstance(file, int):  # os.fdopen: its os.open was the open step; name its writes
        handle = _real_open(file, mode, *args, **kwargs)
        path = _fd_path(file)
        if writing and path is not None and _relative(path) is not None:
            return _File(handle, path)
        return handle
    if writing:
        _step("open", file, mode=mode)
    handle = _real_open(file, mode, *args, **kwargs)
    if writing and _relative(file) is not None:
        return _File(handle, file)
    return handle


def _os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        _step("open", _at(path, kwargs.get("dir_fd")), flags=flags)
    return _real_os_open(path, flags, *args, **kwargs)


def _sync(real: Any, name: str) -> Any:
    def sync(fd: int) -> None:
        path = _fd_path(fd)
        is_dir = path is not None and stat.S_ISDIR(os.fstat(fd).st_mode)
        _step("dirsync" if is_dir else "sync", path, call=name)
        real(fd)

    return sync


def _at(path: Any, dir_fd: int | None) -> Any:
    """``path`` as a call with ``dir_fd`` means it (``openat`` and friends)."""
    base = None if dir_fd is None else _fd_path(dir_fd)
    return path if base is None else os.path.join(base, os.fsdecode(path))


def _replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    source = _relative(_at(src, kwargs.get("src_dir_fd")))
    _step("rename", _at(dst, kwargs.get("dst_dir_fd")), source=source)
    _real_replace(src, dst, *args, **kwargs)


def _rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    source = _relative(_at(src, kwargs.get("src_dir_fd")))
    _step("rename", _at(dst, kwargs.get("dst_dir_fd")), source=source)
    _real_rename(src, dst, *args, **kwargs)


def _unlink(path: Any, *args: Any, **kwargs: Any) -> None:
    _step("unlink", path)
    _real_unlink(path, *args, **kwargs)


def _mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
    _step("mkdir", _at(path, kwargs.get("dir_fd")))
    _real_mkdir(path, *args, **kwargs)


class _Registry(sqlite3.Connection):
    """The registry's connection: its changes are ``registry`` steps."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in ("INSERT", "UPDATE", "DELETE"):
            try:
                _step("registry", self.database_path, verb=verb)
            except OSError:
                raise sqlite3.OperationalError("database or disk is full") from None
        return super().execute(sql, *args)

    database_path: str = ""


def _connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    if _relative(database) is None or "factory" in kwargs:
        plain: sqlite3.Connection = _real_connect(database, *args, **kwargs)
        return plain
    connection = _real_connect(database, *args, factory=_Registry, **kwargs)
    assert isinstance(connection, _Registry)
    connection.database_path = os.fsdecode(database)
    return connection


if _CONFIG:
    _reload()
    builtins.open = io.open = _open
    os.open = _os_open
    os.fsync = _sync(_real_fsync, "fsync")
    if hasattr(os, "fdatasync"):
        os.fdatasync = _sync(_real_fdatasync, "fdatasync")
    os.replace, os.rename, os.unlink, os.mkdir = _replace, _rename, _unlink, _mkdir
    sqlite3.connect = _connect  # type: ignore[assignment]
