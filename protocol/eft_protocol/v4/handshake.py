"""The version-4 handshake: Noise XX carried in three framed messages.

    1  C->S  826   e                        header 00*16 04 3a03 20000000, payload 32
    2  S->C  1602  e, ee, s, es + hello     header 04 4206 6c000000, payload 108
    3  C->S  825|827  s, se + intent        payload 48 + len(intent) + 16

The first header is in the Noise prologue, so a peer that changes the offered version
(a downgrade) breaks message 2. The server hello is encrypted to the server's static key
and repeats the selected version.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass

from ..codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode
from ..errors import ProtocolError

VERSION = 4
PROLOGUE_PREFIX = b"eft/4"
CLIENT_ID_LABEL = b"eft/4 client-id"
ZERO_ID = bytes(16)

HELLO_SIZE = 32
SERVER_HELLO_SIZE = 108
MIN_INTENT_MESSAGE = 48 + 5 + 16  # static key, the shortest intent, its tag
MAX_INTENT_MESSAGE = 48 + 3 + 100 + 1 + 64 + 16

_SERVER_HELLO = struct.Struct("<BBHQ")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
FLAG_OPEN_REGISTRATION = 0x01


class HandshakeError(ProtocolError):
    """The handshake failed: the connection is closed without another word."""

    reason = "handshake"
    fatal = True


def hello_header() -> bytes:
    return REQUEST_HEADER.pack(ZERO_ID, VERSION, RequestCode.SEND_PUBLIC_KEY, HELLO_SIZE)


def server_hello_header() -> bytes:
    return RESPONSE_HEADER.pack(VERSION, ResponseCode.PUBLIC_KEY_ACCEPTED, SERVER_HELLO_SIZE)


def intent_header(code: RequestCode, message_size: int) -> bytes:
    return REQUEST_HEADER.pack(ZERO_ID, VERSION, code, message_size)


def prologue(first_header: bytes) -> bytes:
    return PROLOGUE_PREFIX + first_header


def client_id_for(static_public: bytes) -> bytes:
    return hashlib.sha256(CLIENT_ID_LABEL + static_public).digest()[:16]


def fingerprint(static_public: bytes) -> str:
    digest = hashlib.sha256(static_public).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class ServerHello:
    max_file_size: int
    open_registration: bool = True
    selected_version: int = VERSION

    def encode(self) -> bytes:
        flags = FLAG_OPEN_REGISTRATION if self.open_registration else 0
        return _SERVER_HELLO.pack(self.selected_version, flags, 0, self.max_file_size)

    @classmethod
    def decode(cls, data: bytes) -> ServerHello:
        if len(data) != _SERVER_HELLO.size:
            raise HandshakeError("server hello is not 12 bytes")
        version, flags, reserved, max_size = _SERVER_HELLO.unpack(data)
        if version != VERSION:
            raise HandshakeError(f"server selected version {version}, not 4")
        if reserved or flags & ~FLAG_OPEN_REGISTRATION:
            raise HandshakeError("server hello has reserved bits set")
        return cls(max_size, bool(flags & FLAG_OPEN_REGISTRATION), version)


@dataclass(frozen=True)
class Intent:
    code: RequestCode  # REGISTER or RECONNECT (login)
    name: str
    token: bytes = b""

    def encode(self) -> bytes:
        name = self.name.encode("ascii")
        return (
            struct.pack("<HB", self.code, len(name)) + name + bytes([len(self.token)]) + self.token
        )

    @classmethod
    def decode(cls, data: bytes) -> Intent:
        if len(data) < 5:
            raise HandshakeError("intent too short")
        code, name_len = struct.unpack_from("<HB", data)
        end = 3 + name_len
        if code not in (RequestCode.REGISTER, RequestCode.RECONNECT) or len(data) < end + 1:
            raise HandshakeError("malformed intent")
        token_len = data[end]
        if len(data) != end + 1 + token_len or token_len > 64:
            raise HandshakeError("malformed intent")
        name = check_name(data[3:end])
        return cls(RequestCode(code), name, bytes(data[end + 1 :]))


def check_name(raw: bytes) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise HandshakeError("name is not ASCII") from None
    if not NAME_PATTERN.fullmatch(name):
        raise HandshakeError("name must match [A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
    return name
