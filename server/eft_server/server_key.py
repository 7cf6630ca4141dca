"""The server's long-term version-4 key: created once, kept in the data directory.

Clients pin its fingerprint (``SHA256:...``), so losing this file makes every pinned
client refuse the server: back it up with the data.

Rotation (docs/OPERATIONS.md, docs/PROTOCOL-v4.md §4 "Rotating the server key"):
``eft-admin rotate-key`` makes the next key, ``server.next.key``, which the server
announces (``NEXT_KEY``) while it exists; ``rotate-key --retire`` makes it the current
key and keeps the old one aside as ``server.key.retired-<UTC time>``.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from dataclasses import dataclass
from pathlib import Path

from eft_protocol.noise import KeyPair

from .startup import ServerKeyExposed
from .storage import FILE_MODE, _fsync_directory, make_directories

KEY_FILE = "server.key"
NEXT_KEY_FILE = "server.next.key"
RETIRED_PREFIX = KEY_FILE + ".retired-"


class KeyRotationError(Exception):
    """A rotation step that does not apply now (no next key, one already made)."""


@dataclass(frozen=True)
class ServerKeys:
    """The current key and, during a rotation, the next one (announced to clients)."""

    current: KeyPair
    next: KeyPair | None = None
    #: When the next key was made (its file's time): the grace period runs from there.
    next_since: float | None = None


def load_or_create(data_dir: Path) -> KeyPair:
    path = data_dir / KEY_FILE
    try:
        return _load(path)
    except FileNotFoundError:
        key = KeyPair.generate()
        _write_new(path, _key_text(key))
        return key


def load_keys(data_dir: Path, *, create: bool = True) -> ServerKeys:
    """The current key (made on first start when ``create``) and the next one, if any."""
    current = load_or_create(data_dir) if create else _load(data_dir / KEY_FILE)
    path = data_dir / NEXT_KEY_FILE
    try:
        since = path.stat().st_mtime
        return ServerKeys(current, _load(path), since)
    except FileNotFoundError:
        return ServerKeys(current)


def make_next(data_dir: Path) -> ServerKeys:
    """``rotate-key``: a new next key, durable before anyone is told of it."""
    keys = load_keys(data_dir, create=False)
    if keys.next is not None:
        raise KeyRotationError(
            f"{data_dir / NEXT_KEY_FILE} already holds the next key: retire the current "
            "key first (rotate-key --retire), after the grace period"
        )
    key = KeyPair.generate()
    _write_new(data_dir / NEXT_KEY_FILE, _key_text(key))
    return ServerKeys(keys.current, key, time.time())


def retire_current(data_dir: Path) -> tuple[ServerKeys, Path]:
    """``rotate-key --retire``: the next key becomes the current one; the old current
    key is kept aside (returned), never deleted. Each step is a rename or a new file
    made durable, so a crash leaves the old state or the new one: first the old key's
    copy, then ``server.next.key`` replaces ``server.key`` in one rename."""
    keys = load_keys(data_dir, create=False)
    if keys.next is None:
        raise KeyRotationError(f"no next key ({data_dir / NEXT_KEY_FILE}): run rotate-key first")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    retired = data_dir / f"{RETIRED_PREFIX}{stamp}"
    suffix = 1
    while retired.exists():
        retired, suffix = data_dir / f"{RETIRED_PREFIX}{stamp}-{suffix}", suffix + 1
    _write_new(retired, _key_text(keys.current))
    os.replace(data_dir / NEXT_KEY_FILE, data_dir / KEY_FILE)
    _fsync_directory(data_dir)
    return ServerKeys(keys.next), retired


def _key_text(key: KeyPair) -> str:
    return base64.b64encode(key.private).decode() + "\n"


def _load(path: Path) -> KeyPair:
    with open(path, encoding="ascii") as handle:
        _refuse_exposed(path, os.fstat(handle.fileno()))
        text = handle.read().strip()
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
