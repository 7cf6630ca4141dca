"""One server per data directory: an exclusive lock on ``<data dir>/eft.lock``.

Two servers on one directory would delete each other's uploads in flight (start-up
removes every temporary file) and write one registry from two in-memory copies that
disagree. The lock is ``flock`` on a file of its own: the kernel drops it when the
process dies however it dies, so a crash never leaves a stale lock behind. The file
holds the holder's pid, for the message.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .storage import make_directories

LOCK_FILE = "eft.lock"


class DataDirLocked(Exception):
    """Another server uses this data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        make_directories(data_dir)
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            import fcntl  # noqa: PLC0415 - POSIX only

            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no flock; one server per directory is on the user
            pass
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            self.release()
            raise DataDirLocked(
                f"{data_dir} is in use by another eft-server (pid {holder}); stop it, or give "
                "this one another --data-dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
