"""What a client run is told: where, as whom, and how patient to be (both versions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol.codes import DEFAULT_PACKET_SIZE

from .config import ClientPaths


@dataclass(frozen=True)
class ClientSettings:
    host: str
    port: int
    name: str
    config_dir: Path
    packet_size: int = DEFAULT_PACKET_SIZE
    connect_timeout: float = 10.0
    #: Local address to connect from (None: the system's choice).
    source_address: str | None = None
    response_timeout: float = 60.0
    #: After a connection breaks, new ones are tried for this long (a server restart).
    retry_for: float = 60.0
    #: At most this many new connections per break; None: as many as the window allows.
    retries: int | None = None
    #: First backoff in seconds; doubles each retry, capped, with jitter.
    backoff: float = 0.5
    backoff_cap: float = 5.0
    #: Where the identity, pins and upload ids are (docs/IDENTITY.md); None: all in
    #: ``config_dir``, as the seed and the lab keep them.
    paths: ClientPaths | None = None
    #: The user's word to replace the stored identity (the old one is set aside): on a
    #: name that differs from the identity's, or a version-3 1606.
    re_register: bool = False
    #: The operator's invitation token, carried by a registration only (never logged).
    token: bytes = field(default=b"", repr=False)

    @property
    def files(self) -> ClientPaths:
        return self.paths or ClientPaths.in_one_directory(self.config_dir)
