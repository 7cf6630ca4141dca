"""The server's registry: in memory only (``--ephemeral``, the seed's behaviour) or SQLite.

Both answer from memory; they differ in what survives a restart. ``flush`` returns a
future that completes once every change so far is durable, or None when there is
nothing to wait for.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import replace
from pathlib import Path

from eft_protocol.cksum import Cksum
from eft_protocol.registry import FileRecord, FileRecordV4, MemoryRegistry
from eft_protocol.v4.file_digest import file_digest


class EphemeralRegistry(MemoryRegistry):
    def flush(self) -> concurrent.futures.Future[None] | None:
        return None

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        """``flushed`` (from ``flush``) failed: undo its changes in memory too, so that
        memory says what the disk says (a name whose registration was not written is
        free again)."""

    def close(self) -> None:
        pass


def open_registry(data_dir: Path, *, ephemeral: bool) -> EphemeralRegistry:
    if ephemeral:
        return EphemeralRegistry()
    from .sqlite_registry import DATABASE_FILE, SqliteRegistry  # noqa: PLC0415 - cycle

    return SqliteRegistry(data_dir / DATABASE_FILE)


def reconcile(registry: EphemeralRegistry, files_dir: Path) -> tuple[int, int, int]:
    """Make version 3's file records match the disk after a crash; returns (added,
    removed, corrected).

    A file reaches its final name only after the client's 900, so a file on disk
    without a record is a verified file whose record the crash lost; a record whose
    size differs is one whose file was replaced and whose new record the crash lost.
    """
    removed = corrected = 0
    for record in registry.files():
        path = Path(record.path)
        if not path.is_file():
            registry.forget_file(record.client_id, record.file_name)
            removed += 1
        elif path.stat().st_size != record.size:
            size, value = _cksum(path)
            registry.save_file(replace(record, size=size, cksum=value))
            corrected += 1
    added = 0
    for path in files_dir.glob("*/*"):
        client_id = _client_id(path)
        if client_id is None or registry.file(client_id, path.name) is not None:
            continue
        if registry.client_by_id(client_id) is None:
            continue  # a client the registry no longer knows: leave its files alone
        size, value = _cksum(path)
        registry.save_file(FileRecord(client_id, path.name, str(path), size, value, True))
        added += 1
    return added, removed, corrected


def reconcile_v4(registry: EphemeralRegistry, files_dir: Path) -> tuple[int, int, int]:
    """The same for version 4's files (``v4/files``), with their BLAKE3 digests."""
    removed = corrected = 0
    for record in registry.files_v4():
        path = Path(record.path)
        if not path.is_file():
            registry.forget_file_v4(record.client_id, record.file_name)
            removed += 1
        elif path.stat().st_size != record.size:
            size, digest = _blake3(path)
            registry.save_file_v4(replace(record, size=size, digest=digest))
            corrected += 1
    known = {client.client_id for client in registry.clients_v4()}
    added = 0
    for path in files_dir.glob("*/*"):
        client_id = _client_id(path)
        if client_id not in known or registry.file_v4(client_id, path.name) is not None:
            continue  # (files of clients the registry does not know are left alone)
        assert client_id is not None
        size, digest = _blake3(path)
        registry.save_file_v4(FileRecordV4(client_id, path.name, str(path), size, digest))
        added += 1
    return added, removed, corrected


def _client_id(path: Path) -> bytes | None:
    if not path.is_file():
        return None
    try:
        client_id = bytes.fromhex(path.parent.name)
    except ValueError:
        return None
    return client_id if len(client_id) == 16 else None


def _cksum(path: Path) -> tuple[int, int]:
    checksum = Cksum()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            checksum.update(chunk)
    return checksum.length, checksum.value


def _blake3(path: Path) -> tuple[int, bytes]:
    digest, size = file_digest(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.digest()
