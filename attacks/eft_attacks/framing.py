"""Cut a version-3 byte stream into whole frames, and build the frames attacks send.

An attacker sees and rewrites frames, not events: ``Framer`` keeps each frame's exact
bytes (``raw``) so a proxy can forward it untouched or rebuild it. Encoding reuses
``eft_protocol.wire``: the attacks speak the same bytes as the real client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from eft_protocol.codes import (
    PACKET_FIELDS,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    VERSION,
    RequestCode,
    ResponseCode,
)
from eft_protocol.wire import FileReceived, PacketHeader, decode_string, encode_string


@dataclass(frozen=True)
class Frame:
    """One whole request or response, as it was on the wire."""

    raw: bytes
    version: int
    code: int
    payload: bytes
    client_id: bytes | None = None  # requests only

    @property
    def is_request(self) -> bool:
        return self.client_id is not None

    @property
    def is_packet(self) -> bool:
        return self.is_request and self.code == RequestCode.SEND_FILE

    def packet(self) -> tuple[Packet, bytes]:
        """The fields and content of an 828."""
        fields = self.payload[: PACKET_FIELDS.size]
        content_size, orig_size, number, total, name = PACKET_FIELDS.unpack(fields)
        return (
            Packet(content_size, orig_size, number, total, _name(name)),
            self.payload[PACKET_FIELDS.size :],
        )

    def name_field(self) -> str:
        """The first 255-byte string of 825, 826, 827, 900, 901, 902."""
        return _name(self.payload[:255])

    def file_received(self) -> FileReceived:
        assert self.code == ResponseCode.FILE_RECEIVED
        return FileReceived.decode_payload(self.payload)

    def describe(self) -> str:
        if self.is_request:
            assert self.client_id is not None
            return f"{self.code} id={self.client_id.hex()[:8]} {len(self.payload)}B"
        return f"{self.code} {len(self.payload)}B"


@dataclass(frozen=True)
class Packet:
    content_size: int
    orig_size: int
    number: int
    total: int
    file_name: str


def _name(field: bytes) -> str:
    """A string field, leniently: attacks must read what they see, valid or not."""
    try:
        return decode_string(field)
    except Exception:
        return field.split(b"\0", 1)[0].decode("latin-1")


class Framer:
    """Feed bytes in any pieces; take whole frames out."""

    def __init__(self, *, requests: bool) -> None:
        self.requests = requests
        self._header = REQUEST_HEADER if requests else RESPONSE_HEADER
        self._buffer = bytearray()
        self.offset = 0  # stream offset of the start of the buffer

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        size = self._header.size
        while len(self._buffer) >= size:
            fields = self._header.unpack_from(self._buffer)
            payload_size = fields[-1]
            if len(self._buffer) < size + payload_size:
                break
            raw = bytes(self._buffer[: size + payload_size])
            del self._buffer[: size + payload_size]
            self.offset += len(raw)
            frames.append(parse_frame(raw, requests=self.requests))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


def parse_frame(raw: bytes, *, requests: bool) -> Frame:
    if requests:
        client_id, version, code, _size = REQUEST_HEADER.unpack_from(raw)
        return Frame(raw, version, code, raw[REQUEST_HEADER.size :], client_id)
    version, code, _size = RESPONSE_HEADER.unpack_from(raw)
    return Frame(raw, version, code, raw[RESPONSE_HEADER.size :])


# --- building requests -------------------------------------------------------------


def request(client_id: bytes, code: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """Any request, including ones the real client would never send."""
    return REQUEST_HEADER.pack(client_id, version, code, len(payload)) + payload


def name_request(client_id: bytes, code: int, name: str) -> bytes:
    """825, 827, 900, 901 or 902: one 255-byte string."""
    return request(client_id, code, raw_string(name))


def raw_string(text: str) -> bytes:
    """A 255-byte field; tries the strict encoder, then takes the text as it is."""
    try:
        return encode_string(text)
    except Exception:
        raw = text.encode("latin-1")[:254]
        return raw + bytes(255 - len(raw))


def packet_frame(
    client_id: bytes,
    file_name: str,
    content: bytes,
    *,
    content_size: int,
    orig_size: int,
    number: int = 1,
    total: int = 1,
) -> bytes:
    header = PacketHeader(client_id, content_size, orig_size, number, total, "x")
    start = header.encode_frame_start(len(content))
    # Put the name in by hand so that names the strict encoder refuses can be sent.
    name_at = REQUEST_HEADER.size + PACKET_FIELDS.size - 255
    return start[:name_at] + raw_string(file_name) + content


def one_packet_attempt(client_id: bytes, file_name: str, ciphertext: bytes) -> bytes:
    """A whole file attempt in one 828 whose sizes the server takes as advisory.

    ``orig_size`` is set so that ``content_size != 16 * (orig_size // 16 + 1)``: the
    server then checks neither size (spec section 8), so any valid padding passes.
    """
    advisory = len(ciphertext)  # padded_size(n) > n: never consistent
    return packet_frame(
        client_id, file_name, ciphertext, content_size=len(ciphertext), orig_size=advisory
    )


def resliced(packets: list[Frame], ciphertext: bytes) -> list[bytes]:
    """The same 828s (same headers and slice sizes), carrying other ciphertext bytes."""
    frames, at = [], 0
    for frame in packets:
        fields = frame.payload[: PACKET_FIELDS.size]
        size = len(frame.payload) - PACKET_FIELDS.size
        head = frame.raw[: REQUEST_HEADER.size] + fields
        frames.append(head + ciphertext[at : at + size])
        at += size
    if at != len(ciphertext):
        raise ValueError("the new ciphertext does not fill the packets exactly")
    return frames


U32 = struct.Struct("<I")


def response(code: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """Any response: a man in the middle speaks for the server as easily as the server."""
    return RESPONSE_HEADER.pack(version, code, len(payload)) + payload
