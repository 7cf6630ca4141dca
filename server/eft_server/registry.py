"""The server's registry: in memory only (``--ephemeral``, the seed's behaviour) or SQLite.

Both answer from memory; they differ in what survives a restart. ``flush`` returns a
future that completes once every change so far is durable, or None when there is
nothing to wait for.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from eft_protocol.cksum import Cksum
from eft_protocol.registry import FileRecord, MemoryRegistry


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


def reconcile(registry: EphemeralRegistry, files_dir: Path) -> tuple[int, int]:
    """Make the file records match the disk after a crash; returns (added, removed).

    A file reaches its final name only after the client's 900, so a file on disk
    without a record is a verified file whose record the crash lost.
    """
    removed = 0
    for record in registry.files():
        if not Path(record.path).is_file():
            registry.forget_file(record.client_id, record.file_name)
            removed += 1
    added = 0
    for path in files_dir.glob("*/*"):
        try:
            client_id = bytes.fromhex(path.parent.name)
        except ValueError:
            continue
        if not path.is_file() or registry.file(client_id, path.name) is not None:
            continue
        if registry.client_by_id(client_id) is None:
            continue  # a client the registry no longer knows: leave its files alone
        checksum = Cksum()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                checksum.update(chunk)
        registry.save_file(
            FileRecord(client_id, path.name, str(path), checksum.length, checksum.value, True)
        )
        added += 1
    return added, removed
