"""POSIX ``cksum`` (CRC-32/CKSUM plus the length), streaming, on a C-speed CRC library.

The ``cksum`` command feeds the data, then the data's length as little-endian bytes
(only as many as needed, none for 0), then complements. ``fastcrc``'s CRC-32/CKSUM
already complements; passing a previous result as ``initial`` continues from it.
"""

from __future__ import annotations

from fastcrc import crc32


class Cksum:
    """Accumulates a file in pieces; ``value`` is what ``cksum FILE`` prints first."""

    __slots__ = ("_crc", "_length")

    def __init__(self) -> None:
        self._crc: int = crc32.cksum(b"")
        self._length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._crc = crc32.cksum(data, self._crc)
        self._length += len(data)

    @property
    def length(self) -> int:
        return self._length

    @property
    def value(self) -> int:
        length = self._length
        length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "little")
        result: int = crc32.cksum(length_bytes, self._crc)
        return result


def cksum(data: bytes | bytearray | memoryview) -> int:
    """The cksum of one buffer."""
    checksum = Cksum()
    checksum.update(data)
    return checksum.value
