"""The server's long-term version-4 key: created once, kept in the data directory.

Clients pin its fingerprint (``SHA256:...``), so losing this file makes every pinned
client refuse the server: back it up with the data.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from eft_protocol.noise import KeyPair

from .startup import ServerKeyExposed
from .storage import FILE_MODE, _fsync_directory, make_directories

KEY_FILE = "server.key"


def load_or_create(data_dir: Path) -> KeyPair:
    path = data_dir / KEY_FILE
    try:
        with open(path, encoding="ascii") as handle:
            _refuse_exposed(path, os.fstat(handle.fileno()))
            text = handle.read().strip()
    except FileNotFoundError:
        key = KeyPair.generate()
        _write_new(path, base64.b64encode(key.private).decode() + "\n")
        return key
    try:
        private = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{path} is not Base64") from None
    if len(private) != 32:
        raise ValueError(f"{path} must hold a 32-byte X25519 private key")
    return KeyPair.from_private(private)


def _refuse_exposed(path: Path, status: os.stat_result) -> None:
    """As OpenSSH: a private key that group or others can read, or that another user
    owns (and so can replace), is refused rather than used. Checked on the open file,
    so the file checked is the file read."""
    if os.name != "posix":
        return  # modes and owners mean little on Windows; its ACLs are the user's part
    mode = status.st_mode & 0o777
    if mode & 0o077:
        raise ServerKeyExposed.too_open(path, mode)
    if status.st_uid != os.geteuid():
        raise ServerKeyExposed.not_owned(path, status.st_uid, os.geteuid())


def _write_new(path: Path, text: str) -> None:
    """Atomically and durably: a power loss leaves no key or the whole key, never an
    empty file that stops the server from starting, and never loses a key that a client
    may already have pinned (the directory is synced before the key is ever used)."""
    make_directories(path.parent)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        raise FileExistsError(f"{path} appeared while it was being made")
    os.replace(temp, path)
    _fsync_directory(path.parent)
