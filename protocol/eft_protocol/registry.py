"""What a server remembers about clients, and the interfaces the sessions see it through.

The sessions ask the registry synchronously (``ClientRegistry``, ``ClientRegistryV4``):
a sans-IO session cannot await. An engine must therefore answer a lookup without
waiting on the network: from memory (``MemoryRegistry``, here), or from a bounded cache
in front of a local database (the server's SQLite engine, which queries its file on a
miss: a point lookup on an indexed key, tens of microseconds). The server's wider
interface, with writes made durable through a future, is ``eft_server.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: bytes
    name: str
    last_seen: float
    public_key: bytes | None = field(default=None, repr=False)
    aes_key: bytes | None = field(default=None, repr=False)  # the last key issued


@dataclass(frozen=True, slots=True)
class FileRecord:
    client_id: bytes
    file_name: str  # the storage (base) name
    path: str
    size: int
    cksum: int
    verified: bool


@dataclass(frozen=True, slots=True)
class ClientRecordV4:
    """A version-4 client: its identity is its static key. Kept apart from version 3."""

    client_id: bytes
    name: str
    static_public: bytes
    registered_at: float
    last_seen: float

    def seen(self, now: float) -> ClientRecordV4:
        return ClientRecordV4(
            self.client_id, self.name, self.static_public, self.registered_at, now
        )


@dataclass(frozen=True, slots=True)
class FileRecordV4:
    client_id: bytes
    file_name: str  # a relative path (docs/PROTOCOL-v4.md section 6.3)
    path: str
    size: int
    digest: bytes
    algorithm: str = "blake3"  # the digest's (file_digest.algorithm_label)


class ClientRegistryV4(Protocol):
    """What the version-4 session reads and writes; every call answers at once."""

    def client_v4_by_key(self, static_public: bytes) -> ClientRecordV4 | None: ...

    def client_v4_by_name(self, name: str) -> ClientRecordV4 | None: ...

    def save_client_v4(self, record: ClientRecordV4) -> None: ...


class ClientRegistry(Protocol):
    """What the version-3 session reads and writes; every call answers at once."""

    def client_by_id(self, client_id: bytes) -> ClientRecord | None: ...

    def client_by_name(self, name: str) -> ClientRecord | None: ...

    def save_client(self, record: ClientRecord) -> None:
        """Insert or replace by client id. Names stay unique: callers check first."""

    def forget_client(self, client_id: bytes) -> None:
        """Remove a client that never finished registering (it has no files)."""


@runtime_checkable
class RegistrationGate(Protocol):
    """A registry that also decides who may take a new name: the server's policy
    (open, allowlist, closed, invitation tokens, rate limits, revoked keys). The sessions
    ask it only for a name nobody holds, with the time the driver gave them and the
    invitation token the client's first contact carried (empty if none); the answer is
    the reason for a refusal, or None. A granted registration has spent its token's use."""

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None: ...


def registration_refusal(
    registry: object,
    name: str,
    client_id: bytes,
    version: int,
    now: float,
    *,
    token: bytes = b"",
) -> str | None:
    """Why ``registry`` refuses a new registration, or None (a registry with no policy
    lets everyone register: the original design)."""
    if isinstance(registry, RegistrationGate):
        return registry.refuse_registration(name, client_id, version, now, token)
    return None


class MemoryRegistry:
    """The seed's behaviour: everything in memory, gone when the process ends (tests,
    ``--ephemeral``). Its memory grows with every record: the durable engine does not
    build on it."""

    def __init__(self) -> None:
        self._clients: dict[bytes, ClientRecord] = {}
        self._names: dict[str, bytes] = {}
        self._files: dict[tuple[bytes, str], FileRecord] = {}
        self._v4_by_key: dict[bytes, ClientRecordV4] = {}
        self._v4_names: dict[str, bytes] = {}
        self._v4_ids: dict[bytes, bytes] = {}  # client id -> static key
        self._files_v4: dict[tuple[bytes, str], FileRecordV4] = {}

    def client_v4_by_key(self, static_public: bytes) -> ClientRecordV4 | None:
        return self._v4_by_key.get(static_public)

    def client_v4_by_name(self, name: str) -> ClientRecordV4 | None:
        key = self._v4_names.get(name)
        return None if key is None else self._v4_by_key[key]

    def client_v4_by_id(self, client_id: bytes) -> ClientRecordV4 | None:
        key = self._v4_ids.get(client_id)
        return None if key is None else self._v4_by_key[key]

    def save_client_v4(self, record: ClientRecordV4) -> None:
        owner = self._v4_names.get(record.name)
        if owner is not None and owner != record.static_public:
            raise ValueError(f"name {record.name!r} belongs to another version-4 client")
        self._v4_by_key[record.static_public] = record
        self._v4_names[record.name] = record.static_public
        self._v4_ids[record.client_id] = record.static_public

    def forget_client_v4(self, static_public: bytes) -> None:
        record = self._v4_by_key.pop(static_public, None)
        if record is not None and self._v4_names.get(record.name) == static_public:
            del self._v4_names[record.name]
        if record is not None and self._v4_ids.get(record.client_id) == static_public:
            del self._v4_ids[record.client_id]

    def clients_v4(self) -> list[ClientRecordV4]:
        return list(self._v4_by_key.values())

    def save_file_v4(self, record: FileRecordV4) -> None:
        self._files_v4[(record.client_id, record.file_name)] = record

    def file_v4(self, client_id: bytes, file_name: str) -> FileRecordV4 | None:
        return self._files_v4.get((client_id, file_name))

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None:
        self._files_v4.pop((client_id, file_name), None)

    def files_v4(self) -> list[FileRecordV4]:
        return list(self._files_v4.values())

    def client_by_id(self, client_id: bytes) -> ClientRecord | None:
        return self._clients.get(client_id)

    def client_by_name(self, name: str) -> ClientRecord | None:
        client_id = self._names.get(name)
        return None if client_id is None else self._clients[client_id]

    def save_client(self, record: ClientRecord) -> None:
        owner = self._names.get(record.name)
        if owner is not None and owner != record.client_id:
            raise ValueError(f"name {record.name!r} belongs to another client")
        self._clients[record.client_id] = record
        self._names[record.name] = record.client_id

    def forget_client(self, client_id: bytes) -> None:
        record = self._clients.pop(client_id, None)
        if record is not None and self._names.get(record.name) == client_id:
            del self._names[record.name]

    def save_file(self, record: FileRecord) -> None:
        self._files[(record.client_id, record.file_name)] = record

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        self._files.pop((client_id, file_name), None)

    def file(self, client_id: bytes, file_name: str) -> FileRecord | None:
        return self._files.get((client_id, file_name))

    def files(self) -> list[FileRecord]:
        return list(self._files.values())

    def clients(self) -> list[ClientRecord]:
        return list(self._clients.values())

    def client_count(self) -> int:
        """Clients of both versions."""
        return len(self._clients) + len(self._v4_by_key)
