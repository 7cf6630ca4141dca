"""The version-4 handshake (revision 2): Noise XX carried in three framed messages.

    1  C->S  826   e + offer                header 00*16 04 3a03 26000000, payload 38
   (1') S->C 1602  cookie                   header 04 4206 10000000, payload 16: under load,
                                            message 1 again, its offer carrying the cookie
    2  S->C  1602  e, ee, s, es + hello     header 04 4206 74000000, payload 116
    3  C->S  825|827  s, se + intent        payload 48 + len(intent) + 16

The suite is ``Noise_XX_25519_AESGCM_SHA256``: the cipher named is the one the records
use, so a standard Noise library runs both. The offer (message 1's payload, in clear
but hashed into the handshake) lists the revisions and features the client speaks; the
server hello, encrypted to the server's static key, says which it selected. The first
header is in the Noise prologue, so a peer that changes the offered version, or the
offer, breaks message 2 (a downgrade fails).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from ..codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode
from ..errors import ProtocolError, ResponseError

VERSION = 4
#: The one Noise suite of revision 2 on: records use its cipher (AES-256-GCM) too.
NOISE_CIPHER = "AESGCM"
NOISE_PROTOCOL_NAME = b"Noise_XX_25519_AESGCM_SHA256"
#: Revision 1 (the first release) had no offer: message 1 was the bare ephemeral key,
#: under ``Noise_XX_25519_ChaChaPoly_SHA256``. Revision 2 is this module.
REVISION_1 = 1
REVISION = 2
#: The revisions this implementation speaks (a server selects the highest in common).
SUPPORTED_REVISIONS = frozenset({REVISION})
#: Optional features, a bit each. A server ignores bits it does not know (it never
#: selects them); a client refuses a bit it did not offer.
#: NEXT_KEY: the server hello may carry the server's next static key, proven by the
#: current one (the encrypted hello) and by the next one (a DH with the client's
#: ephemeral key), so that pinned clients can follow a key rotation (issue 28).
FEATURE_NEXT_KEY = 0x0000_0001
#: STREAM: several files in flight (docs/PROTOCOL-v4.md section 8.1): metadata flagged
#: STREAM is followed by its data at once, 903 COMMIT_IF ends a file, and up to
#: ``records.STREAM_WINDOW`` files may be unanswered; the server answers groups of them
#: once they are durable. A peer without the bit keeps one file at a time.
FEATURE_STREAM = 0x0000_0002
#: WIDE_WINDOW (only with STREAM): ``records.WIDE_STREAM_WINDOW`` files may be
#: unanswered instead of ``records.STREAM_WINDOW``, and the server's groups are half of
#: that: fewer syncs per file, and a window that does not stall while a group commits
#: (issue 25). A peer without the bit keeps the narrow window, so old and new peers mix.
FEATURE_WIDE_WINDOW = 0x0000_0004
#: PACK (only with STREAM and WIDE_WINDOW): 904 carries several small whole files in one
#: record, and 1608 answers them once they are durable (``pack``; docs/PROTOCOL-v4.md
#: section 8.2): three records each way per small file became one per pack (issue 25).
FEATURE_PACK = 0x0000_0008
SUPPORTED_FEATURES = FEATURE_NEXT_KEY | FEATURE_STREAM | FEATURE_WIDE_WINDOW | FEATURE_PACK
NEXT_KEY_LABEL = b"eft/4 next-key"
NEXT_KEY_SIZE = 32 + 32  # the next static public key, its proof
PROLOGUE_PREFIX = b"eft/4"
CLIENT_ID_LABEL = b"eft/4 client-id"
ZERO_ID = bytes(16)

OFFER_SIZE = 6  # revisions u16, features u32
#: The offer's first later field: the cookie of a cookie reply (16 bytes; zeros: none).
COOKIE_OFFSET = OFFER_SIZE
COOKIE_SIZE = 16
#: The cookie reply: a 1602 whose payload is the cookie alone (no DH went into it).
COOKIE_REPLY_SIZE = COOKIE_SIZE
#: A later client may append bytes to its offer; a server ignores them (they are hashed).
MAX_OFFER_SIZE = 64
HELLO_SIZE = 32 + OFFER_SIZE
MIN_HELLO_SIZE = 32 + OFFER_SIZE
MAX_HELLO_SIZE = 32 + MAX_OFFER_SIZE
#: Revision 1's message 1: its size alone tells an older client from a newer one.
REVISION_1_HELLO_SIZE = 32
SERVER_HELLO_PLAINTEXT = 20
SERVER_HELLO_SIZE = 32 + 48 + SERVER_HELLO_PLAINTEXT + 16
MIN_INTENT_MESSAGE = 48 + 5 + 16  # static key, the shortest intent, its tag
MAX_INTENT_MESSAGE = 48 + 3 + 100 + 1 + 64 + 16

_OFFER = struct.Struct("<HI")  # revisions, features
_SERVER_HELLO = struct.Struct("<BBBBHHIQ")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
FLAG_OPEN_REGISTRATION = 0x01


class HandshakeError(ProtocolError):
    """The handshake failed: the connection is closed without another word."""

    reason = "handshake"
    fatal = True


def hello_header(size: int = HELLO_SIZE) -> bytes:
    return REQUEST_HEADER.pack(ZERO_ID, VERSION, RequestCode.SEND_PUBLIC_KEY, size)


def revision_1_hello_header() -> bytes:
    """What a revision-1 client sends first: refused, since it has no offer."""
    return _REVISION_1_HELLO_HEADER


#: The fixed headers a server compares or sends in every handshake, packed once.
_REVISION_1_HELLO_HEADER = hello_header(REVISION_1_HELLO_SIZE)
_HELLO_HEADER_PREFIX = hello_header(0)[:19]  # all but the size
_SERVER_HELLO_HEADERS = {
    has_next_key: RESPONSE_HEADER.pack(
        VERSION,
        ResponseCode.PUBLIC_KEY_ACCEPTED,
        SERVER_HELLO_SIZE + (NEXT_KEY_SIZE if has_next_key else 0),
    )
    for has_next_key in (False, True)
}


def revision_1_server_hello(max_file_size: int, open_registration: bool) -> bytes:
    """Revision 1's 12-byte server hello, which a server sends only to refuse an older
    client in words it understands (a 1607 after its message 3)."""
    flags = FLAG_OPEN_REGISTRATION if open_registration else 0
    return struct.pack("<BBHQ", VERSION, flags, 0, max_file_size)


def revision_1_server_hello_header() -> bytes:
    return RESPONSE_HEADER.pack(VERSION, ResponseCode.PUBLIC_KEY_ACCEPTED, 32 + 48 + 12 + 16)


def is_hello_header(header: bytes) -> bool:
    """Message 1's header: exact but for the size, which the offer's length sets."""
    size = int.from_bytes(header[19:23], "little")
    return (
        len(header) == REQUEST_HEADER.size
        and header[:19] == _HELLO_HEADER_PREFIX
        and MIN_HELLO_SIZE <= size <= MAX_HELLO_SIZE
    )


def server_hello_header(features: int = 0) -> bytes:
    """Message 2's header: 116 bytes, or 180 with the next key (FEATURE_NEXT_KEY)."""
    return _SERVER_HELLO_HEADERS[bool(features & FEATURE_NEXT_KEY)]


def cookie_reply_header() -> bytes:
    """The answer of a server under load to a message 1 without a valid cookie."""
    return RESPONSE_HEADER.pack(VERSION, ResponseCode.PUBLIC_KEY_ACCEPTED, COOKIE_REPLY_SIZE)


def cookie_in(offer: bytes) -> bytes:
    """The cookie an offer carries (message 1's payload after the key, read in clear
    before any DH), or b"" when it carries none."""
    cookie = offer[COOKIE_OFFSET : COOKIE_OFFSET + COOKIE_SIZE]
    return cookie if len(cookie) == COOKIE_SIZE and any(cookie) else b""


def next_key_proof(shared: bytes, current_static: bytes, next_static: bytes) -> bytes:
    """HMAC-SHA256 keyed with DH(next static, client ephemeral): only the holder of the
    next private key makes it, and only for this connection's ephemeral key."""
    return hmac.digest(shared, NEXT_KEY_LABEL + current_static + next_static, "sha256")


def intent_header(code: RequestCode, message_size: int) -> bytes:
    return REQUEST_HEADER.pack(ZERO_ID, VERSION, code, message_size)


def prologue(first_header: bytes) -> bytes:
    return PROLOGUE_PREFIX + first_header


def client_id_for(static_public: bytes) -> bytes:
    return hashlib.sha256(CLIENT_ID_LABEL + static_public).digest()[:16]


def fingerprint(static_public: bytes) -> str:
    digest = hashlib.sha256(static_public).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def revision_bits(revisions: frozenset[int] | set[int]) -> int:
    return sum(1 << revision for revision in revisions)


@functools.lru_cache(maxsize=64)  # every message 1 has one (u16): a handful in practice
def revisions_in(bits: int) -> frozenset[int]:
    return frozenset(revision for revision in range(16) if bits >> revision & 1)


@dataclass(frozen=True)
class Offer:
    """Message 1's Noise payload: what the client speaks. Sent in clear, but hashed, so
    a changed offer makes message 2 fail at the client."""

    revisions: frozenset[int] = SUPPORTED_REVISIONS
    features: int = SUPPORTED_FEATURES
    #: From a cookie reply: sent in the message 1 that follows it (b"": none).
    cookie: bytes = b""

    def encode(self) -> bytes:
        fields = _OFFER.pack(revision_bits(self.revisions), self.features)
        return fields + self.cookie if self.cookie else fields

    @classmethod
    def decode(cls, data: bytes) -> Offer:
        """Bits and bytes this revision does not know are ignored (later clients)."""
        if not OFFER_SIZE <= len(data) <= MAX_OFFER_SIZE:
            raise HandshakeError("the offer is not 6 to 64 bytes")
        revisions, features = _OFFER.unpack_from(data)
        return cls(revisions_in(revisions), features, cookie_in(data))

    def select(self) -> tuple[int, int]:
        """The server's choice: the highest revision in common (0: none) and the
        offered features it knows."""
        common = self.revisions & SUPPORTED_REVISIONS
        return max(common, default=0), self.features & SUPPORTED_FEATURES


@dataclass(frozen=True)
class ServerHello:
    max_file_size: int
    open_registration: bool = True
    selected_version: int = VERSION
    #: The revision selected for this session; 0 when the offer had none the server
    #: speaks (the server then closes, and ``revisions`` says what it speaks).
    revision: int = REVISION
    features: int = 0
    revisions: frozenset[int] = SUPPORTED_REVISIONS
    #: With FEATURE_NEXT_KEY: the server's next static public key and its proof.
    next_key: bytes = b""
    next_key_proof: bytes = b""

    def encode(self) -> bytes:
        flags = FLAG_OPEN_REGISTRATION if self.open_registration else 0
        extension = self.next_key + self.next_key_proof
        if len(extension) != (NEXT_KEY_SIZE if self.features & FEATURE_NEXT_KEY else 0):
            raise ValueError("the next key and its proof go with FEATURE_NEXT_KEY only")
        return (
            _SERVER_HELLO.pack(
                self.selected_version,
                flags,
                self.revision,
                0,
                revision_bits(self.revisions),
                0,
                self.features,
                self.max_file_size,
            )
            + extension
        )

    @classmethod
    def decode(cls, data: bytes) -> ServerHello:
        if len(data) < _SERVER_HELLO.size:
            raise HandshakeError(f"server hello is not {_SERVER_HELLO.size} bytes")
        version, flags, revision, reserved, revisions, reserved2, features, max_size = (
            _SERVER_HELLO.unpack_from(data)
        )
        extension = data[_SERVER_HELLO.size :]
        if len(extension) != (NEXT_KEY_SIZE if features & FEATURE_NEXT_KEY else 0):
            raise HandshakeError("the server hello's size does not match its features")
        if version != VERSION:
            raise HandshakeError(f"server selected version {version}, not 4")
        if reserved or reserved2 or flags & ~FLAG_OPEN_REGISTRATION:
            raise HandshakeError("server hello has reserved bits set")
        return cls(
            max_size,
            bool(flags & FLAG_OPEN_REGISTRATION),
            version,
            revision,
            features,
            revisions_in(revisions),
            bytes(extension[:32]),
            bytes(extension[32:]),
        )

    def check_against(self, offer: Offer) -> None:
        """The client's rule: a selection it did not offer is an error, none a refusal."""
        if self.revision == 0:
            theirs = ", ".join(str(r) for r in sorted(self.revisions)) or "none"
            ours = ", ".join(str(r) for r in sorted(offer.revisions))
            raise NoCommonRevision(
                f"the server speaks version-4 revision(s) {theirs}, this client {ours}: "
                "upgrade the older side"
            )
        if self.revision not in offer.revisions or self.features & ~offer.features:
            raise HandshakeError("the server selected a revision or feature not offered")


class NoCommonRevision(ResponseError):
    """The server speaks no revision the client offered (it said so, authenticated)."""

    reason = "no_common_revision"


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
