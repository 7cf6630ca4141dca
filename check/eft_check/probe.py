"""A recording client connection for probing a server under test.

It sends frames exactly as it is told (whole, in pieces, several in one write), reads
responses by the header's ``payload_size`` with a loop, and keeps every frame either
way so a finding can show the bytes. Responses are decoded by hand rather than through
``parser.ResponseParser``: that parser rightly refuses what a checker must describe.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass

from eft_protocol.codes import (
    RESPONSE_HEADER,
    RESPONSE_PAYLOAD_SIZES,
    VERSION,
    ResponseCode,
)

from .report import Frame, fail

#: A declared payload larger than any response could be is not waited for.
MAX_RESPONSE_PAYLOAD = 4096


class Closed(ConnectionError):
    """The server closed the connection."""


@dataclass(frozen=True)
class Answer:
    version: int
    code: int
    payload_size: int
    payload: bytes

    @property
    def known_code(self) -> bool:
        return self.code in RESPONSE_PAYLOAD_SIZES

    def describe(self) -> str:
        return f"{self.code} with {len(self.payload)} payload bytes"


class Probe:
    """One TCP connection to the server under test."""

    def __init__(self, address: tuple[str, int], timeout: float, log: list[Frame]) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.log = log

    def close(self) -> None:
        self.sock.close()

    def send(self, *frames: bytes) -> None:
        """Each frame in its own write."""
        for frame in frames:
            self.log.append(Frame("sent", frame, request=True))
            self.sock.sendall(frame)

    def send_together(self, *frames: bytes) -> None:
        """All frames in one write (a server must split them by their headers)."""
        for frame in frames:
            self.log.append(Frame("sent", frame, request=True))
        self.sock.sendall(b"".join(frames))

    def send_in_pieces(self, frame: bytes, cuts: tuple[int, ...], gap: float) -> None:
        """One frame in several writes, cut at these offsets, ``gap`` seconds apart so
        that they reach the server as separate segments (TCP_NODELAY is on)."""
        self.log.append(Frame("sent", frame, request=True))
        bounds = [0, *(cut for cut in cuts if cut < len(frame)), len(frame)]
        for start, end in itertools.pairwise(bounds):
            self.sock.sendall(frame[start:end])
            time.sleep(gap)  # the point of the check: the pieces must arrive apart

    def _recv_exact(self, size: int, so_far: bytearray) -> None:
        while len(so_far) < size:
            try:
                chunk = self.sock.recv(size - len(so_far))
            except TimeoutError:
                raise fail(
                    f"{size} bytes",
                    f"{len(so_far)} bytes ({bytes(so_far).hex() or 'nothing'}), then "
                    f"silence for {self.timeout:g} s",
                ) from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if so_far:
                    self.log.append(Frame("received", bytes(so_far), request=False))
                raise Closed(f"closed after {len(so_far)} of {size} bytes")
            so_far += chunk

    def receive(self) -> Answer:
        """The next response: the header, then as many bytes as it declares."""
        raw = bytearray()
        self._recv_exact(RESPONSE_HEADER.size, raw)
        version, code, payload_size = RESPONSE_HEADER.unpack(raw)
        if version != VERSION or payload_size > MAX_RESPONSE_PAYLOAD:
            self.log.append(Frame("received", bytes(raw), request=False))
            raise fail(
                "a response header: version 3, a 1600-1607 code, a small payload_size",
                f"version {version}, code {code}, payload_size {payload_size}",
                "payload-size-mismatch" if version != VERSION else None,
            )
        try:
            self._recv_exact(RESPONSE_HEADER.size + payload_size, raw)
        except Closed:
            raise fail(
                f"{payload_size} payload bytes, as the header declares",
                f"{len(raw) - RESPONSE_HEADER.size}, then the connection closed",
                "payload-size-mismatch",
            ) from None
        self.log.append(Frame("received", bytes(raw), request=False))
        return Answer(version, code, payload_size, bytes(raw[RESPONSE_HEADER.size :]))


def expected_size(code: int) -> int | None:
    try:
        return RESPONSE_PAYLOAD_SIZES[ResponseCode(code)]
    except ValueError:
        return None
