"""Every version-3 message as a frozen dataclass that encodes to and decodes from bytes.

Requests carry the 23-byte header (client id, version, code, payload size); responses the
7-byte one. ``encode()`` always writes the strict layout of the spec; the decoders are
tolerant where peers in the wild differ: a 1606 of any short size (spec section 8), and
junk after a string's terminating NUL (C senders that reuse a buffer leave it there).
The 828 packet is here for senders and tests; a server reads 828s
through ``parser.RequestParser``, which streams the content instead of holding it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Self

from . import errors
from .codes import (
    CLIENT_ID_SIZE,
    ENCRYPTED_AES_KEY_SIZE,
    MAX_FIELD_STRING,
    MAX_TOKEN,
    NAME_FIELD_SIZE,
    PACKET_FIELDS,
    PUBLIC_KEY_SIZE,
    REQUEST_HEADER,
    REQUEST_PAYLOAD_SIZES,
    RESPONSE_HEADER,
    RESPONSE_PAYLOAD_SIZES,
    VERSION,
    RequestCode,
    ResponseCode,
)

ZERO_CLIENT_ID = bytes(CLIENT_ID_SIZE)
_FILE_RECEIVED_TAIL = struct.Struct("<I255sI")  # after client_id: content_size, name, cksum


# --- string fields ----------------------------------------------------------------


def encode_string(text: str) -> bytes:
    """A 255-byte field: printable ASCII, NUL-terminated, NUL-padded."""
    _check_printable_ascii(text)
    raw = text.encode("ascii")
    return raw + bytes(NAME_FIELD_SIZE - len(raw))


def decode_string(field_bytes: bytes) -> str:
    """Read a 255-byte field. Bytes after the first NUL are ignored (C senders leave junk)."""
    if len(field_bytes) != NAME_FIELD_SIZE:
        raise errors.BadStringField(f"string field is {len(field_bytes)} bytes, not 255")
    end = field_bytes.find(0)
    if end < 0:
        raise errors.BadStringField("string field has no terminating NUL")
    try:
        text = field_bytes[:end].decode("ascii")
    except UnicodeDecodeError:
        raise errors.BadStringField("string field is not ASCII") from None
    _check_printable_ascii(text)
    return text


def _check_printable_ascii(text: str) -> None:
    if not text:
        raise errors.BadStringField("string field is empty")
    if len(text) > MAX_FIELD_STRING:
        raise errors.BadStringField(f"string is {len(text)} characters, at most 254 fit")
    if not (text.isascii() and text.isprintable()):
        raise errors.BadStringField("string has non-ASCII or control characters")


def _check_client_id(client_id: bytes) -> None:
    if len(client_id) != CLIENT_ID_SIZE:
        raise ValueError(f"client id must be 16 bytes, got {len(client_id)}")


# --- headers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestHeader:
    client_id: bytes
    version: int
    code: int  # an int, not a RequestCode: unknown codes must still be representable
    payload_size: int

    SIZE: ClassVar[int] = REQUEST_HEADER.size

    @classmethod
    def decode(cls, data: bytes) -> RequestHeader:
        client_id, version, code, payload_size = REQUEST_HEADER.unpack(data)
        return cls(client_id, version, code, payload_size)

    def encode(self) -> bytes:
        return REQUEST_HEADER.pack(self.client_id, self.version, self.code, self.payload_size)


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    version: int
    code: int
    payload_size: int

    SIZE: ClassVar[int] = RESPONSE_HEADER.size

    @classmethod
    def decode(cls, data: bytes) -> ResponseHeader:
        return cls(*RESPONSE_HEADER.unpack(data))

    def encode(self) -> bytes:
        return RESPONSE_HEADER.pack(self.version, self.code, self.payload_size)


def _request_frame(client_id: bytes, code: RequestCode, payload: bytes) -> bytes:
    _check_client_id(client_id)
    return REQUEST_HEADER.pack(client_id, VERSION, code, len(payload)) + payload


def _response_frame(code: ResponseCode, payload: bytes) -> bytes:
    return RESPONSE_HEADER.pack(VERSION, code, len(payload)) + payload


# --- requests ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NameRequest:
    """A request whose payload is one user name field (825, 827)."""

    client_id: bytes
    name: str
    code: ClassVar[RequestCode]

    def encode(self) -> bytes:
        return _request_frame(self.client_id, self.code, encode_string(self.name))

    @classmethod
    def decode_payload(cls, client_id: bytes, payload: bytes) -> Self:
        return cls(client_id, decode_string(payload))


@dataclass(frozen=True, slots=True)
class _FileNameRequest:
    """A request whose payload is one file name field (900, 901, 902)."""

    client_id: bytes
    file_name: str
    code: ClassVar[RequestCode]

    def encode(self) -> bytes:
        return _request_frame(self.client_id, self.code, encode_string(self.file_name))

    @classmethod
    def decode_payload(cls, client_id: bytes, payload: bytes) -> Self:
        return cls(client_id, decode_string(payload))


#: An invitation token rides in the 825's name slot after the name's NUL, where the
#: original design has padding that servers ignore: ``name NUL "eft-token:" token NUL``
#: (docs/PROTOCOL-v3.md, "Invitation tokens"). The mark keeps C senders' junk there
#: from being read as a token.
TOKEN_MARK = b"eft-token:"
#: MAX_TOKEN, the longest token, is in ``codes`` (the client's command line checks it).


@dataclass(frozen=True, slots=True)
class RegisterRequest(_NameRequest):
    code: ClassVar[RequestCode] = RequestCode.REGISTER
    token: bytes = b""

    def encode(self) -> bytes:
        field = encode_string(self.name)
        if self.token:
            extra = TOKEN_MARK + self.token + b"\0"
            start = len(self.name) + 1
            if len(self.token) > MAX_TOKEN or start + len(extra) > NAME_FIELD_SIZE:
                raise ValueError("the token does not fit in the name's 255-byte slot")
            if not (self.token.isascii() and self.token.decode().isprintable()):
                raise ValueError("a token is printable ASCII")
            field = field[:start] + extra + field[start + len(extra) :]
        return _request_frame(self.client_id, self.code, field)

    @classmethod
    def decode_payload(cls, client_id: bytes, payload: bytes) -> Self:
        name = decode_string(payload)
        rest = bytes(payload[len(name) + 1 :])
        token = b""
        if rest.startswith(TOKEN_MARK):
            end = rest.find(0, len(TOKEN_MARK))
            if end > 0:
                token = rest[len(TOKEN_MARK) : end][: MAX_TOKEN + 1]
        return cls(client_id, name, token)


@dataclass(frozen=True, slots=True)
class ReconnectRequest(_NameRequest):
    code: ClassVar[RequestCode] = RequestCode.RECONNECT


@dataclass(frozen=True, slots=True)
class PublicKeyRequest:
    client_id: bytes
    name: str
    public_key: bytes = field(repr=False)
    code: ClassVar[RequestCode] = RequestCode.SEND_PUBLIC_KEY

    def encode(self) -> bytes:
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"public key must be {PUBLIC_KEY_SIZE} bytes")
        payload = encode_string(self.name) + self.public_key
        return _request_frame(self.client_id, self.code, payload)

    @classmethod
    def decode_payload(cls, client_id: bytes, payload: bytes) -> PublicKeyRequest:
        name = decode_string(payload[:NAME_FIELD_SIZE])
        return cls(client_id, name, bytes(payload[NAME_FIELD_SIZE:]))


@dataclass(frozen=True, slots=True)
class CrcOkRequest(_FileNameRequest):
    code: ClassVar[RequestCode] = RequestCode.CRC_OK


@dataclass(frozen=True, slots=True)
class CrcRetryRequest(_FileNameRequest):
    code: ClassVar[RequestCode] = RequestCode.CRC_RETRY


@dataclass(frozen=True, slots=True)
class CrcGiveUpRequest(_FileNameRequest):
    code: ClassVar[RequestCode] = RequestCode.CRC_GIVE_UP


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """The fixed fields of an 828, as sent (before any section-8 tolerance is applied)."""

    client_id: bytes
    content_size: int
    orig_file_size: int
    packet_number: int
    total_packets: int
    file_name: str
    code: ClassVar[RequestCode] = RequestCode.SEND_FILE

    @classmethod
    def decode_fields(cls, client_id: bytes, fields: bytes) -> PacketHeader:
        content_size, orig_size, number, total, name = PACKET_FIELDS.unpack(fields)
        return cls(client_id, content_size, orig_size, number, total, decode_string(name))

    def encode_frame_start(self, content_length: int) -> bytes:
        """Header and fixed fields of a packet whose content (sent next) has this length."""
        _check_client_id(self.client_id)
        fields = PACKET_FIELDS.pack(
            self.content_size,
            self.orig_file_size,
            self.packet_number,
            self.total_packets,
            encode_string(self.file_name),
        )
        payload_size = len(fields) + content_length
        return REQUEST_HEADER.pack(self.client_id, VERSION, self.code, payload_size) + fields


@dataclass(frozen=True, slots=True)
class FilePacket:
    """A whole 828 in memory: for senders, whose packets are small, and for tests."""

    header: PacketHeader
    content: bytes = field(repr=False)
    code: ClassVar[RequestCode] = RequestCode.SEND_FILE

    def encode(self) -> bytes:
        return self.header.encode_frame_start(len(self.content)) + self.content


Request = (
    RegisterRequest
    | PublicKeyRequest
    | ReconnectRequest
    | CrcOkRequest
    | CrcRetryRequest
    | CrcGiveUpRequest
)

#: The fixed-size requests, by code. 828 is streamed and has no entry.
REQUEST_TYPES: dict[RequestCode, type[Request]] = {
    RequestCode.REGISTER: RegisterRequest,
    RequestCode.SEND_PUBLIC_KEY: PublicKeyRequest,
    RequestCode.RECONNECT: ReconnectRequest,
    RequestCode.CRC_OK: CrcOkRequest,
    RequestCode.CRC_RETRY: CrcRetryRequest,
    RequestCode.CRC_GIVE_UP: CrcGiveUpRequest,
}
assert set(REQUEST_TYPES) == set(REQUEST_PAYLOAD_SIZES)


def decode_request(header: RequestHeader, payload: bytes) -> Request:
    """Decode a fixed-size request whose header the caller has already checked."""
    message_type = REQUEST_TYPES[RequestCode(header.code)]
    return message_type.decode_payload(header.client_id, payload)


# --- responses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ClientIdResponse:
    """A response whose payload is the client id (1600, 1604, 1606)."""

    client_id: bytes
    code: ClassVar[ResponseCode]

    def encode(self) -> bytes:
        _check_client_id(self.client_id)
        return _response_frame(self.code, self.client_id)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class _KeyResponse:
    """The client id and a fresh AES key wrapped with the client's RSA key (1602, 1605)."""

    client_id: bytes
    encrypted_aes_key: bytes = field(repr=False)
    code: ClassVar[ResponseCode]

    def encode(self) -> bytes:
        _check_client_id(self.client_id)
        if len(self.encrypted_aes_key) != ENCRYPTED_AES_KEY_SIZE:
            raise ValueError("an RSA-1024 OAEP ciphertext is 128 bytes")
        return _response_frame(self.code, self.client_id + self.encrypted_aes_key)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        return cls(bytes(payload[:CLIENT_ID_SIZE]), bytes(payload[CLIENT_ID_SIZE:]))


@dataclass(frozen=True, slots=True)
class Registered(_ClientIdResponse):
    code: ClassVar[ResponseCode] = ResponseCode.REGISTERED


@dataclass(frozen=True, slots=True)
class PublicKeyAccepted(_KeyResponse):
    code: ClassVar[ResponseCode] = ResponseCode.PUBLIC_KEY_ACCEPTED


@dataclass(frozen=True, slots=True)
class Reconnected(_KeyResponse):
    code: ClassVar[ResponseCode] = ResponseCode.RECONNECTED


@dataclass(frozen=True, slots=True)
class Acknowledged(_ClientIdResponse):
    code: ClassVar[ResponseCode] = ResponseCode.ACKNOWLEDGED


@dataclass(frozen=True, slots=True)
class ReconnectDenied(_ClientIdResponse):
    """Its client id is empty when a server sends the short variant of spec section 8."""

    code: ClassVar[ResponseCode] = ResponseCode.RECONNECT_DENIED


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    code: ClassVar[ResponseCode] = ResponseCode.REGISTRATION_FAILED

    def encode(self) -> bytes:
        return _response_frame(self.code, b"")

    @classmethod
    def decode_payload(cls, payload: bytes) -> RegistrationFailed:
        return cls()


@dataclass(frozen=True, slots=True)
class FileReceived:
    client_id: bytes
    content_size: int
    file_name: str
    cksum: int
    code: ClassVar[ResponseCode] = ResponseCode.FILE_RECEIVED

    def encode(self) -> bytes:
        _check_client_id(self.client_id)
        tail = _FILE_RECEIVED_TAIL.pack(
            self.content_size, encode_string(self.file_name), self.cksum
        )
        return _response_frame(self.code, self.client_id + tail)

    @classmethod
    def decode_payload(cls, payload: bytes) -> FileReceived:
        content_size, name, cksum = _FILE_RECEIVED_TAIL.unpack(payload[CLIENT_ID_SIZE:])
        return cls(bytes(payload[:CLIENT_ID_SIZE]), content_size, decode_string(name), cksum)


@dataclass(frozen=True, slots=True)
class ServerError:
    code: ClassVar[ResponseCode] = ResponseCode.SERVER_ERROR

    def encode(self) -> bytes:
        return _response_frame(self.code, b"")

    @classmethod
    def decode_payload(cls, payload: bytes) -> ServerError:
        return cls()


Response = (
    Registered
    | RegistrationFailed
    | PublicKeyAccepted
    | FileReceived
    | Acknowledged
    | Reconnected
    | ReconnectDenied
    | ServerError
)

RESPONSE_TYPES: dict[ResponseCode, type[Response]] = {
    ResponseCode.REGISTERED: Registered,
    ResponseCode.REGISTRATION_FAILED: RegistrationFailed,
    ResponseCode.PUBLIC_KEY_ACCEPTED: PublicKeyAccepted,
    ResponseCode.FILE_RECEIVED: FileReceived,
    ResponseCode.ACKNOWLEDGED: Acknowledged,
    ResponseCode.RECONNECTED: Reconnected,
    ResponseCode.RECONNECT_DENIED: ReconnectDenied,
    ResponseCode.SERVER_ERROR: ServerError,
}
assert set(RESPONSE_TYPES) == set(RESPONSE_PAYLOAD_SIZES)


def check_response_size(code: ResponseCode, payload_size: int) -> None:
    """Raise unless payload_size is what this response code carries."""
    expected = RESPONSE_PAYLOAD_SIZES[code]
    if payload_size == expected:
        return
    if code is ResponseCode.RECONNECT_DENIED and payload_size <= 64:
        return  # read 1606 "whatever its size" (spec section 8); some send it empty
    if code is ResponseCode.ACKNOWLEDGED and payload_size == 0:
        return  # a server in the wild answers 900 with an empty 1604 (spec section 8)
    raise errors.ResponseError(
        f"response {int(code)} carries {payload_size} bytes, expected {expected}"
    )


def decode_response(header: ResponseHeader, payload: bytes) -> Response:
    """Decode a response; raises ResponseError for anything a server may not send."""
    if header.version != VERSION:
        raise errors.ResponseError(f"response has version {header.version}, expected {VERSION}")
    try:
        code = ResponseCode(header.code)
    except ValueError:
        raise errors.ResponseError(f"unknown response code {header.code}") from None
    check_response_size(code, header.payload_size)
    if len(payload) != header.payload_size:
        raise errors.ResponseError("response payload is shorter than its header says")
    try:
        return RESPONSE_TYPES[code].decode_payload(payload)
    except errors.BadStringField as exc:
        raise errors.ResponseError(f"response {int(code)}: {exc}") from None
