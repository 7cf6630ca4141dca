"""The upload ids of unfinished version-4 files, kept in ``uploads.json``.

An id is made when a file is first offered and kept until the file is verified (or the
server asks for it again from the start), so that a broken connection or a restarted
client resumes where the server's durable copy ends. A file's entry is keyed by the
server, its path, size and modification time: a changed file is a new upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from .config import make_private_directory


class UploadIds:
    """Upload ids of unfinished files, so a later run can resume them."""

    def __init__(self, path: Path, server: str) -> None:
        self.path, self.server = path, server

    def _key(self, file: Path, size: int) -> str:
        info = file.stat()
        return f"{self.server}|{file.resolve()}|{size}|{info.st_mtime_ns}"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def known(self, file: Path, size: int) -> bool:
        try:
            return self._key(file, size) in self._load()
        except OSError:
            return False

    def any_kept(self) -> bool:
        """Whether any unfinished upload to this server is kept: when none is (a
        folder's first run), no file needs its own look-up (a stat, a resolve and a
        read of this file each)."""
        prefix = f"{self.server}|"
        return any(key.startswith(prefix) for key in self._load())

    def get(self, file: Path, size: int) -> bytes:
        entries = self._load()
        key = self._key(file, size)
        if key not in entries:
            entries[key] = secrets.token_hex(16)
            self._save(entries)
        return bytes.fromhex(entries[key])

    def forget(self, file: Path, size: int) -> None:
        entries = self._load()
        with contextlib.suppress(OSError):
            if entries.pop(self._key(file, size), None) is not None:
                self._save(entries)

    def _save(self, entries: dict[str, str]) -> None:
        make_private_directory(self.path.parent)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(entries, indent=1))
        os.replace(temp, self.path)
