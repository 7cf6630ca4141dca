"""Which protocol version a new connection speaks, from its first 23-byte header.

The server reads one request header before it knows the version; the choice is the
protocol's, so it is made here and the listener only follows it.
"""

from __future__ import annotations

import enum

from .codes import REQUEST_HEADER

#: The version byte's offset in a request header (after the 16-byte client id).
VERSION_OFFSET = 16


class Route(enum.Enum):
    VERSION_3 = 3
    VERSION_4 = 4
    REFUSED = 0  # version 3 (or garbage) while ``--legacy deny``


def route(first_header: bytes, legacy: str) -> Route:
    """``legacy`` is the server's setting: ``allow`` serves version 3, ``deny`` refuses it."""
    assert len(first_header) == REQUEST_HEADER.size
    if first_header[VERSION_OFFSET] == 4:
        return Route.VERSION_4
    if legacy == "allow":
        return Route.VERSION_3  # or garbage: the version-3 driver answers it with 1607
    return Route.REFUSED
