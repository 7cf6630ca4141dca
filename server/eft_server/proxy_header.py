"""The PROXY protocol v2 header a load balancer (HAProxy's ``send-proxy-v2``) puts
before each connection on the port configured for it (``--proxy-port``).

Only that port reads it, and there it is required: a header is never guessed at on
the normal port (a client could then claim any address). Strict: version 2 only (the
text v1 is not accepted), a bounded length, TCP over IPv4 or IPv6 for a proxied
connection, and LOCAL, the command HAProxy's health checks send, which is answered
with ``HEALTH_REPLY`` by the event loop (a hung replica does not answer: docs/SCALING.md).

The header is decoded by the ``proxy-protocol`` library; this module bounds what it
reads and says which results it accepts.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import struct
from dataclasses import dataclass

from proxyprotocol import (
    ProxyProtocolChecksumError,
    ProxyProtocolIncompleteError,
    ProxyProtocolSyntaxError,
)
from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
from proxyprotocol.v2 import ProxyProtocolV2

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED_PART = 16  # the signature, version and command, family and protocol, length
#: The address block and its TLVs: 36 bytes for TCP over IPv6, and HAProxy's TLVs
#: (unique id, SSL details) stay far below. A larger claim is refused unread.
MAX_ADDRESS_BLOCK = 1024
#: What a LOCAL connection (a health check) gets: HAProxy's ``tcp-check expect``
#: looks for it (deploy/haproxy/eft.cfg).
HEALTH_REPLY = b"EFT-OK\n"


class BadProxyHeader(ValueError):
    """Not a PROXY v2 header this server accepts; ``reason`` labels the metric."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ProxiedPeer:
    """A LOCAL header (``source`` None: the proxy speaking for itself), or the client's
    (address, port) as the proxy saw it."""

    source: tuple[str, int] | None

    @property
    def local(self) -> bool:
        return self.source is None


def header_length(fixed: bytes) -> int:
    """The length of the rest of the header, from its first 16 bytes."""
    if len(fixed) != FIXED_PART or fixed[:12] != SIGNATURE:
        raise BadProxyHeader("invalid", "no PROXY v2 signature")
    if fixed[12] >> 4 != 2:
        raise BadProxyHeader("invalid", f"version {fixed[12] >> 4}, not 2")
    length = int.from_bytes(fixed[14:16], "big")
    if length > MAX_ADDRESS_BLOCK:
        raise BadProxyHeader("invalid", f"{length} bytes of addresses, above {MAX_ADDRESS_BLOCK}")
    return length


def parse(header: bytes) -> ProxiedPeer:
    """A whole header (its 16 fixed bytes and the block they announce)."""
    if len(header) != FIXED_PART + header_length(header[:FIXED_PART]):
        raise BadProxyHeader("invalid", "the length does not match the header")
    try:
        result = ProxyProtocolV2().unpack(header)
    except ProxyProtocolChecksumError:
        raise BadProxyHeader("invalid", "CRC32C TLV does not match") from None
    except (ProxyProtocolSyntaxError, ProxyProtocolIncompleteError, struct.error) as exc:
        raise BadProxyHeader("invalid", str(exc) or type(exc).__name__) from None
    if not result.proxied:
        return ProxiedPeer(None)
    if not isinstance(result, ProxyResultIPv4 | ProxyResultIPv6):
        # UNSPEC or a UNIX address: no address to count limits by.
        raise BadProxyHeader("unsupported", f"address family {result.type.name}")
    if result.protocol != socket.SOCK_STREAM:
        raise BadProxyHeader("unsupported", "not a stream (TCP) connection")
    address, port = result.source
    return ProxiedPeer((str(address), port))


async def read(reader: asyncio.StreamReader) -> ProxiedPeer:
    """The header at the start of ``reader``, nothing past it consumed; the caller
    bounds the time (``IncompleteReadError``: the peer left before a whole header)."""
    fixed = await reader.readexactly(FIXED_PART)
    rest = await reader.readexactly(header_length(fixed))
    return parse(fixed + rest)


#: The client's address when the connection came through the proxy port: set in the
#: connection's task, read wherever the peer address is used (logs, limits, cookies).
proxied_source: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "eft_proxied_source", default=None
)


def peer_of(writer: asyncio.StreamWriter) -> object:
    """The connection's client address: the PROXY header's, else the socket's."""
    source = proxied_source.get()
    return source if source is not None else writer.get_extra_info("peername")
