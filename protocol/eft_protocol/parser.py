"""Streaming parsers: feed bytes in, take events out.

``RequestParser`` is the server's view of a connection. It checks each header before it
reads a payload, so an attacker-chosen ``payload_size`` costs nothing: fixed-size
payloads are at most 415 bytes, and 828 content is handed out in pieces as it arrives,
never gathered. A well-framed request whose content is bad is skipped and reported as
``RequestRejected`` so the connection stays usable (the client may resend, spec section
4); a header that cannot be trusted raises a fatal ``FramingError``.

``ResponseParser`` is the client's view; responses are at most 279 bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from . import errors
from .codes import (
    PACKET_FIELDS,
    REQUEST_PAYLOAD_SIZES,
    RESPONSE_PAYLOAD_SIZES,
    VERSION,
    RequestCode,
    ResponseCode,
)
from .wire import (
    PacketHeader,
    Request,
    RequestHeader,
    Response,
    ResponseHeader,
    check_response_size,
    decode_request,
    decode_response,
)


class NeedData(enum.Enum):
    """Returned by ``next_event`` when the buffered bytes end before the next event."""

    NEED_DATA = "need data"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A complete fixed-size request (825, 826, 827, 900, 901, 902)."""

    request: Request


@dataclass(frozen=True, slots=True)
class PacketStarted:
    """The fixed fields of an 828; ``content_length`` bytes of content follow."""

    packet: PacketHeader
    content_length: int


@dataclass(frozen=True, slots=True)
class PacketContent:
    """The next piece of the current 828's content."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PacketFinished:
    """The current 828's content is complete."""


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """A well-framed request with bad content; its payload has been skipped.

    For an 828 whose file name field was bad, ``packet_numbers`` still gives the packet
    number and total as sent, so a session can tell whether the attempt is over.
    """

    header: RequestHeader
    error: errors.ProtocolError
    packet_numbers: tuple[int, int] | None = None


RequestEvent = RequestReceived | PacketStarted | PacketContent | PacketFinished | RequestRejected


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """How much a peer may make the parser read or skip. Set per deployment."""

    #: Largest 828 payload (fields plus content) accepted in one packet. Content is
    #: streamed, so this bounds only how long one packet may run, not memory.
    max_packet_payload: int = 0xFFFFFFFF
    #: Largest payload of a bad request that is read and discarded to keep the connection;
    #: anything larger closes the connection instead.
    max_skip: int = 64 * 1024


class _State(enum.Enum):
    HEADER = enum.auto()
    FIXED_PAYLOAD = enum.auto()
    PACKET_FIELDS = enum.auto()
    CONTENT = enum.auto()
    SKIP = enum.auto()
    BROKEN = enum.auto()


class RequestParser:
    """Turns the client-to-server byte stream into ``RequestEvent``s."""

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self._buffer = bytearray()
        self._state = _State.HEADER
        self._header: RequestHeader | None = None
        self._remaining = 0  # content or skip bytes still to come
        self._skip_error: errors.ProtocolError | None = None
        self._skip_numbers: tuple[int, int] | None = None
        # File content that arrived while nothing else was buffered, kept as it came:
        # handed out as it is, without a second copy through the buffer.
        self._direct: bytes | None = None
        #: Headers read so far: a driver tells one frame from the next by it.
        self.frames_started = 0

    @property
    def in_frame(self) -> bool:
        """True between the first byte of a frame and its last."""
        return self._state is not _State.HEADER or bool(self._buffer)

    @property
    def frame_size(self) -> int:
        """Payload size of the frame being read (0 before its header is complete)."""
        if self._state is _State.HEADER or self._header is None:
            return 0
        return self._header.payload_size

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out: what a driver's flow control watches."""
        direct = self._direct
        return len(self._buffer) + (len(direct) if direct is not None else 0)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take a copy of ``data``: the caller may reuse its buffer at once."""
        if self._state is _State.BROKEN:
            raise errors.FramingError("parser already failed; close the connection")
        if self._state is _State.CONTENT and self._direct is None and not self._buffer:
            # The bulk of a file: one copy, straight into the bytes of the next event.
            with memoryview(data) as view:
                size = min(self._remaining, len(view))
                if size:
                    self._direct = bytes(view[:size])
                self._buffer += view[size:]
            return
        self._buffer += data

    def receive_eof(self) -> None:
        """Raise if the stream ended inside a frame."""
        if self.in_frame and self._state is not _State.BROKEN:
            raise errors.TruncatedMessage("connection closed in the middle of a request")

    def next_event(self) -> RequestEvent | NeedData:
        try:
            return self._next_event()
        except errors.FramingError:
            self._state = _State.BROKEN
            raise

    def _next_event(self) -> RequestEvent | NeedData:
        state = self._state
        if state is _State.HEADER:
            if len(self._buffer) < RequestHeader.SIZE:
                return NEED_DATA
            header = RequestHeader.decode(bytes(self._take(RequestHeader.SIZE)))
            self._begin(header)
            return self._next_event()
        if state is _State.FIXED_PAYLOAD:
            return self._fixed_payload()
        if state is _State.PACKET_FIELDS:
            return self._packet_fields()
        if state is _State.CONTENT:
            return self._content()
        if state is _State.SKIP:
            return self._skip()
        raise errors.FramingError("parser already failed; close the connection")

    def _begin(self, header: RequestHeader) -> None:
        """Decide from the header alone how to read what follows."""
        self._header = header
        self.frames_started += 1
        if header.version != VERSION:
            raise errors.UnsupportedVersion(f"version {header.version} is not supported")
        size = header.payload_size
        try:
            code = RequestCode(header.code)
        except ValueError:
            self._start_skip(errors.UnknownCode(f"unknown request code {header.code}"))
            return
        if code is RequestCode.SEND_FILE:
            if size > self.limits.max_packet_payload:
                raise errors.PayloadTooLarge(
                    f"828 payload of {size} bytes exceeds {self.limits.max_packet_payload}"
                )
            if size < PACKET_FIELDS.size:
                self._start_skip(errors.BadPayloadSize(f"828 payload of {size} bytes"))
                return
            self._state = _State.PACKET_FIELDS
            return
        expected = REQUEST_PAYLOAD_SIZES[code]
        if size != expected:
            self._start_skip(
                errors.BadPayloadSize(f"{int(code)} payload is {size} bytes, not {expected}")
            )
            return
        self._state = _State.FIXED_PAYLOAD

    def _start_skip(self, error: errors.ProtocolError) -> None:
        assert self._header is not None
        if self._header.payload_size > self.limits.max_skip:
            raise errors.PayloadTooLarge(
                f"{error}; and {self._header.payload_size} bytes are too many to skip"
            )
        self._skip_error = error
        self._remaining = self._header.payload_size
        self._state = _State.SKIP

    def _fixed_payload(self) -> RequestEvent | NeedData:
        header = self._header
        assert header is not None
        if len(self._buffer) < header.payload_size:
            return NEED_DATA
        payload = bytes(self._take(header.payload_size))
        self._state = _State.HEADER
        try:
            return RequestReceived(decode_request(header, payload))
        except errors.ProtocolError as exc:
            return RequestRejected(header, exc)

    def _packet_fields(self) -> RequestEvent | NeedData:
        header = self._header
        assert header is not None
        if len(self._buffer) < PACKET_FIELDS.size:
            return NEED_DATA
        fields = bytes(self._take(PACKET_FIELDS.size))
        content_length = header.payload_size - PACKET_FIELDS.size
        try:
            packet = PacketHeader.decode_fields(header.client_id, fields)
        except errors.ProtocolError as exc:
            # The content is skipped however long: the sender pays for every byte it sends.
            _, _, number, total, _ = PACKET_FIELDS.unpack(fields)
            self._skip_error = exc
            self._skip_numbers = (number, total)
            self._remaining = content_length
            self._state = _State.SKIP
            return self._next_event()
        self._remaining = content_length
        self._state = _State.CONTENT
        return PacketStarted(packet, content_length)

    def _content(self) -> RequestEvent | NeedData:
        if self._remaining == 0:
            self._state = _State.HEADER
            return PacketFinished()
        if self._direct is not None:
            piece, self._direct = self._direct, None
            self._remaining -= len(piece)
            return PacketContent(piece)
        buffer = self._buffer
        if not buffer:
            return NEED_DATA
        size = min(self._remaining, len(buffer))
        # One copy straight into the event's bytes (slicing first would make two).
        if size == len(buffer):
            piece = bytes(buffer)
            buffer.clear()
        else:
            with memoryview(buffer) as view:
                piece = bytes(view[:size])
            del buffer[:size]
        self._remaining -= size
        return PacketContent(piece)

    def _skip(self) -> RequestEvent | NeedData:
        dropped = min(self._remaining, len(self._buffer))
        del self._buffer[:dropped]
        self._remaining -= dropped
        if self._remaining:
            return NEED_DATA
        assert self._header is not None and self._skip_error is not None
        event = RequestRejected(self._header, self._skip_error, self._skip_numbers)
        self._skip_error = None
        self._skip_numbers = None
        self._state = _State.HEADER
        return event

    def _take(self, size: int) -> bytearray:
        chunk = self._buffer[:size]
        # Deleting from the front of a bytearray is O(1) in CPython.
        del self._buffer[:size]
        return chunk


class ResponseParser:
    """Turns the server-to-client byte stream into ``Response`` messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: ResponseHeader | None = None

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def in_frame(self) -> bool:
        return self._header is not None or bool(self._buffer)

    def next_event(self) -> Response | NeedData:
        if self._header is None:
            if len(self._buffer) < ResponseHeader.SIZE:
                return NEED_DATA
            header = ResponseHeader.decode(bytes(self._buffer[: ResponseHeader.SIZE]))
            del self._buffer[: ResponseHeader.SIZE]
            # Check before waiting for the payload: a bogus size must not make us wait.
            if header.version != VERSION:
                raise errors.ResponseError(f"response version {header.version}, expected 3")
            if header.code not in RESPONSE_PAYLOAD_SIZES:
                raise errors.ResponseError(f"unknown response code {header.code}")
            check_response_size(ResponseCode(header.code), header.payload_size)
            self._header = header
        header = self._header
        if len(self._buffer) < header.payload_size:
            return NEED_DATA
        payload = bytes(self._buffer[: header.payload_size])
        del self._buffer[: header.payload_size]
        self._header = None
        return decode_response(header, payload)
