"""The server's registry: the interface the server uses, and its engines.

``ServerRegistry`` is everything the server asks of a registry. Two engines implement it:

- ``EphemeralRegistry`` (``--ephemeral``, tests, the lab): everything in memory, the
  seed's behaviour; its memory grows with every record, by design.
- ``pg_registry.PgRegistry`` (``--registry postgresql://...``): shared by replicas;
  see docs/SCALING.md for how it keeps this contract.
- ``sqlite_registry.SqliteRegistry`` (the default): the records live in the database
  file; memory holds a bounded LRU cache (``--registry-cache`` entries) and the changes
  not yet written, so it stays flat however many clients and files are stored.

The contract, which every engine keeps:

- **Reads answer at once** (the sans-IO sessions call them synchronously). A cache hit
  costs nothing; on a miss SQLite queries its file on the caller's thread (a point
  lookup by primary or unique key). The PostgreSQL engine cannot cache (other replicas
  change rows): it asks the database on its own thread and waits for the point lookup
  (docs/SCALING.md). The step that removes that wait: the connection driver
  ``await registry.load(...)`` the rows a request names (the client id of an
  827/826/828, the name of an 825, the static key of a version-4 handshake) before the
  session sees the request. That hook is not in the interface yet; every lookup the
  sessions make is by one of those keys.
- **Changes are seen at once and written later.** A change is visible to the next read
  (pending changes are pinned, never evicted) and is sent to the database by ``flush``,
  which returns a ``concurrent.futures.Future`` that completes once every change so far
  is durable, or with the error that refused them; None when there is nothing to wait
  for. Nothing is acknowledged before its future completes (docs/RELIABILITY.md). An
  asyncpg engine returns the future of its write task the same way (or an asyncio
  future wrapped as one), and the driver awaits it unchanged. A shared engine fails it
  with ``registry_errors.NameTaken`` when another server committed the name first.
- **A failed flush leaves the records as the database has them**: ``revert(future)``
  makes sure of it (an engine may have done it already when the write failed).
- **Whole-table reads stream** (``files``, ``files_v4``: start-up reconciliation only),
  and ``client_count`` is kept, not counted: nothing holds every record at once.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from eft_protocol.cksum import Cksum
from eft_protocol.registry import (
    ClientRecord,
    ClientRecordV4,
    ClientRegistry,
    ClientRegistryV4,
    FileRecord,
    FileRecordV4,
    MemoryRegistry,
)
from eft_protocol.v4.file_digest import file_digest

from .sqlite_registry import DATABASE_FILE, DEFAULT_CACHE_ENTRIES, SqliteRegistry


class ServerRegistry(ClientRegistry, ClientRegistryV4, Protocol):
    """What the server (sessions, drivers, start-up) asks of a registry engine."""

    def client_v4_by_id(self, client_id: bytes) -> ClientRecordV4 | None: ...

    def forget_client_v4(self, static_public: bytes) -> None:
        """Remove a version-4 client (an operator's free-name; its files go first)."""

    def clients(self) -> Iterable[ClientRecord]:
        """Every version-3 client, streamed as ``files`` (eft-admin's listings)."""

    def clients_v4(self) -> Iterable[ClientRecordV4]: ...

    def client_count(self) -> int:
        """Clients of both versions the registry knows, changes not yet flushed included."""

    def file(self, client_id: bytes, file_name: str) -> FileRecord | None: ...

    def save_file(self, record: FileRecord) -> None: ...

    def forget_file(self, client_id: bytes, file_name: str) -> None: ...

    def files(self) -> Iterable[FileRecord]:
        """Every version-3 file record, streamed (the flushed ones, for an engine that
        writes behind); changing records while iterating is allowed."""

    def file_v4(self, client_id: bytes, file_name: str) -> FileRecordV4 | None: ...

    def save_file_v4(self, record: FileRecordV4) -> None: ...

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None: ...

    def files_v4(self) -> Iterable[FileRecordV4]:
        """As ``files``, for version 4."""

    def flush(self) -> concurrent.futures.Future[None] | None: ...

    def revert(self, flushed: concurrent.futures.Future[None]) -> None: ...

    def close(self) -> None:
        """Write everything still pending, then release the engine. Blocking."""


class EphemeralRegistry(MemoryRegistry):
    """The in-memory engine: nothing to write, nothing to wait for."""

    def flush(self) -> concurrent.futures.Future[None] | None:
        return None

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        """Nothing was written, so nothing can have failed."""

    def close(self) -> None:
        pass


def open_registry(
    data_dir: Path,
    *,
    ephemeral: bool,
    cache_entries: int = DEFAULT_CACHE_ENTRIES,
    url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerRegistry:
    """The engine configured: in memory, PostgreSQL (``url``, credentials from
    ``environ``: pg_connect), or SQLite in the data directory (the default)."""
    if ephemeral:
        return EphemeralRegistry()
    if url is not None:
        # Imported here: asyncpg is the `postgres` extra, absent from a plain install.
        from .pg_connect import parse_registry_url  # noqa: PLC0415

        settings = parse_registry_url(url, os.environ if environ is None else environ)
        try:
            from .pg_registry import PgRegistry  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(
                f"{exc}: a PostgreSQL registry needs asyncpg (pip install 'eft[postgres]')"
            ) from exc

        return PgRegistry(settings)
    return SqliteRegistry(data_dir / DATABASE_FILE, cache_entries=cache_entries)


def is_shared(registry: object) -> bool:
    """A registry other servers write too: this server's disk is not the truth of it."""
    return bool(getattr(registry, "shared", False))


def reconcile(registry: ServerRegistry, files_dir: Path) -> tuple[int, int, int]:
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


def reconcile_v4(registry: ServerRegistry, files_dir: Path) -> tuple[int, int, int]:
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
    added = 0
    for client_id, path, name in _stored_v4(files_dir):
        if client_id is None or registry.file_v4(client_id, name) is not None:
            continue
        if registry.client_v4_by_id(client_id) is None:
            continue  # a client the registry does not know: leave its files alone
        size, digest = _blake3(path)
        registry.save_file_v4(FileRecordV4(client_id, name, str(path), size, digest))
        added += 1
    return added, removed, corrected


def _stored_v4(files_dir: Path) -> Iterator[tuple[bytes | None, Path, str]]:
    """Every regular file under a client's folder: its client id, path and name (a
    relative path: version-4 names may have folders). Symbolic links are not followed."""
    for client_dir in files_dir.glob("*"):
        if client_dir.is_symlink() or not client_dir.is_dir():
            continue
        try:
            client_id: bytes | None = bytes.fromhex(client_dir.name)
        except ValueError:
            client_id = None
        if client_id is not None and len(client_id) != 16:
            client_id = None
        for folder, _dirs, files in os.walk(client_dir):
            for file in files:
                path = Path(folder, file)
                if path.is_file() and not path.is_symlink():
                    yield client_id, path, path.relative_to(client_dir).as_posix()


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
