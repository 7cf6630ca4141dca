"""What a client run is told: where, as whom, and how patient to be (both versions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eft_protocol.codes import DEFAULT_PACKET_SIZE


@dataclass(frozen=True)
class ClientSettings:
    host: str
    port: int
    name: str
    config_dir: Path
    packet_size: int = DEFAULT_PACKET_SIZE
    connect_timeout: float = 10.0
    response_timeout: float = 60.0
    #: After a connection breaks, new ones are tried for this long (a server restart).
    retry_for: float = 60.0
    #: At most this many new connections per break; None: as many as the window allows.
    retries: int | None = None
    #: First backoff in seconds; doubles each retry, capped, with jitter.
    backoff: float = 0.5
    backoff_cap: float = 5.0
