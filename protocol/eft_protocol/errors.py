"""One error hierarchy for everything a peer can get wrong.

A driver catches ``ProtocolError`` in one place: it answers with ``response_code``,
counts the error under ``reason`` and logs it. ``fatal`` errors mean the byte stream
itself can no longer be trusted (we do not know where the next frame starts), so the
connection is closed after the answer. Anything that is not a ``ProtocolError`` is a
bug in our code.
"""

from __future__ import annotations

from typing import ClassVar

from .codes import ResponseCode


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow."""

    reason: ClassVar[str] = "protocol"
    response_code: ClassVar[ResponseCode] = ResponseCode.SERVER_ERROR
    fatal: ClassVar[bool] = False


# --- framing: the stream is no longer in sync ---------------------------------------


class FramingError(ProtocolError):
    """The header cannot be trusted, so neither can anything after it."""

    reason = "framing"
    fatal = True


class UnsupportedVersion(FramingError):
    reason = "bad_version"


class PayloadTooLarge(FramingError):
    """payload_size is beyond what we are willing to read or skip for this code."""

    reason = "payload_too_large"


class TruncatedMessage(FramingError):
    """The connection ended in the middle of a frame."""

    reason = "truncated"


# --- a well-framed request with bad content ---------------------------------------


class UnknownCode(ProtocolError):
    reason = "unknown_code"


class BadPayloadSize(ProtocolError):
    """payload_size does not match the fixed size of this code."""

    reason = "bad_payload_size"


class BadStringField(ProtocolError):
    """A 255-byte string field without NUL, empty, non-ASCII or with control bytes."""

    reason = "bad_string"


class BadFileName(ProtocolError):
    """A file name that cannot be stored safely (separators only, '..', device names...)."""

    reason = "bad_file_name"


class BadPublicKey(ProtocolError):
    """Not a 160-byte DER of an RSA-1024 key with exponent 17."""

    reason = "bad_public_key"


class UnknownClient(ProtocolError):
    reason = "unknown_client"


class ClientIdMismatch(ProtocolError):
    """The header's client id is not the one this connection registered or reconnected as."""

    reason = "client_id_mismatch"


class NameMismatch(ProtocolError):
    reason = "name_mismatch"


class KeyAlreadySet(ProtocolError):
    """A second 826 for a client that already has a public key."""

    reason = "key_already_set"


class OutOfOrder(ProtocolError):
    """The request is valid, but not in the session's current state."""

    reason = "out_of_order"


class BadPacket(ProtocolError):
    """Packet numbers out of range, repeated, out of order, or a total that changes."""

    reason = "bad_packet"


class SizeMismatch(ProtocolError):
    """More or less content than the sizes the sender declared."""

    reason = "size_mismatch"


class FileTooLarge(ProtocolError):
    reason = "file_too_large"


class BadPadding(ProtocolError):
    """The decrypted file does not end in valid PKCS#7 padding."""

    reason = "bad_padding"


class TooManyAttempts(ProtocolError):
    """The sender started more attempts at one file than the retry rule allows."""

    reason = "too_many_attempts"


# --- the server's answers, seen by a client ---------------------------------------


class ResponseError(ProtocolError):
    """The server answered something the protocol does not allow at this point."""

    reason = "bad_response"
    fatal = True


class UnexpectedResponse(ResponseError):
    reason = "unexpected_response"


class StorageFailed(ProtocolError):
    """Not the peer's fault: the server could not store the file (disk full, I/O error).

    Answered like a protocol error (1607, spec section 4) so the client retries.
    """

    reason = "storage"


# --- a client session that ends without success, by the protocol's own rules -------


class SessionFailed(Exception):
    """The session ended unsuccessfully although both sides kept to the protocol."""


class NameTaken(SessionFailed):
    """The server refused the registration (1601): the name is taken."""


class AttemptsExhausted(SessionFailed):
    """The server's CRC (v4: digest) differed on every attempt; the client gave up (902)."""


class ServerKeptFailing(SessionFailed):
    """The server answered 1607 to a request and to each of its three retries."""


class TooManySessions(ProtocolError):
    """This client already has as many connections open as the server allows."""

    reason = "too_many_sessions"
    fatal = True


#: Every error a version-3 server refuses a request for: the metric label's value set
#: (version 4 closes for the fixed ``v4.server.CLOSE_REASONS``). A test checks that no
#: server-side error class of this module is missing.
SERVER_REFUSALS: tuple[type[ProtocolError], ...] = (
    ProtocolError,
    FramingError,
    UnsupportedVersion,
    PayloadTooLarge,
    TruncatedMessage,
    UnknownCode,
    BadPayloadSize,
    BadStringField,
    BadFileName,
    BadPublicKey,
    UnknownClient,
    ClientIdMismatch,
    NameMismatch,
    KeyAlreadySet,
    OutOfOrder,
    BadPacket,
    SizeMismatch,
    FileTooLarge,
    BadPadding,
    TooManyAttempts,
    StorageFailed,
    TooManySessions,
)
