"""Properties of the streaming parsers, whatever the peer sends and however TCP splits it."""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eft_protocol import errors
from eft_protocol.codes import (
    PACKET_FIELDS,
    REQUEST_HEADER,
    REQUEST_PAYLOAD_SIZES,
    RESPONSE_HEADER,
    RESPONSE_PAYLOAD_SIZES,
    VERSION,
    RequestCode,
    ResponseCode,
)
from eft_protocol.parser import (
    NEED_DATA,
    PacketContent,
    PacketFinished,
    PacketStarted,
    ParserLimits,
    RequestEvent,
    RequestParser,
    RequestReceived,
    RequestRejected,
    ResponseParser,
)
from eft_protocol.wire import (
    Acknowledged,
    CrcGiveUpRequest,
    CrcOkRequest,
    CrcRetryRequest,
    FilePacket,
    FileReceived,
    PacketHeader,
    PublicKeyAccepted,
    PublicKeyRequest,
    ReconnectDenied,
    Reconnected,
    ReconnectRequest,
    Registered,
    RegisterRequest,
    RegistrationFailed,
    Request,
    Response,
    ServerError,
    encode_string,
)
from tests.support.examples import examples

SETTINGS = settings(max_examples=examples(200), deadline=None)
KNOWN_REQUEST_CODES = [int(code) for code in RequestCode]
KNOWN_RESPONSE_CODES = [int(code) for code in ResponseCode]
MAX_SKIP = ParserLimits().max_skip

# --- strategies -------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=254
)
client_ids = st.binary(min_size=16, max_size=16)
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)

requests: st.SearchStrategy[Request] = st.one_of(
    st.builds(RegisterRequest, client_ids, names),
    st.builds(PublicKeyRequest, client_ids, names, st.binary(min_size=160, max_size=160)),
    st.builds(ReconnectRequest, client_ids, names),
    st.builds(CrcOkRequest, client_ids, names),
    st.builds(CrcRetryRequest, client_ids, names),
    st.builds(CrcGiveUpRequest, client_ids, names),
)
file_packets = st.builds(
    FilePacket,
    st.builds(PacketHeader, client_ids, u32, u32, u16, u16, names),
    st.binary(max_size=1024),
)
responses: st.SearchStrategy[Response] = st.one_of(
    st.builds(Registered, client_ids),
    st.just(RegistrationFailed()),
    st.builds(PublicKeyAccepted, client_ids, st.binary(min_size=128, max_size=128)),
    st.builds(FileReceived, client_ids, u32, names, u32),
    st.builds(Acknowledged, client_ids),
    st.builds(Reconnected, client_ids, st.binary(min_size=128, max_size=128)),
    st.builds(ReconnectDenied, client_ids),
    st.just(ServerError()),
)


@st.composite
def header_like(draw: st.DrawFn) -> bytes:
    """A request header that is often plausible, followed by a short payload."""
    version = draw(st.sampled_from([VERSION, VERSION, VERSION, 0, 2, 4, 255]))
    code = draw(st.one_of(st.sampled_from(KNOWN_REQUEST_CODES), u16))
    payload = draw(st.binary(max_size=600))
    size = draw(
        st.one_of(
            st.just(len(payload)),
            st.sampled_from([*REQUEST_PAYLOAD_SIZES.values(), PACKET_FIELDS.size]),
            u32,
        )
    )
    return REQUEST_HEADER.pack(draw(client_ids), version, code, size) + payload


#: Bytes a hostile or broken client might send: noise, near-valid headers, valid frames.
request_noise = st.lists(
    st.one_of(
        st.binary(max_size=300),
        header_like(),
        requests.map(lambda r: r.encode()),
        file_packets.map(lambda p: p.encode()),
    ),
    max_size=6,
).map(b"".join)


@st.composite
def response_like(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([VERSION, VERSION, 2, 255]))
    code = draw(st.one_of(st.sampled_from(KNOWN_RESPONSE_CODES), u16))
    payload = draw(st.binary(max_size=300))
    size = draw(
        st.one_of(st.just(len(payload)), st.sampled_from(list(RESPONSE_PAYLOAD_SIZES.values())))
    )
    return RESPONSE_HEADER.pack(version, code, size) + payload


response_noise = st.lists(
    st.one_of(st.binary(max_size=300), response_like(), responses.map(lambda r: r.encode())),
    max_size=6,
).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def split_points(data: st.DataObject, blob: bytes) -> list[int]:
    return data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=30))


def drain(parser: RequestParser) -> list[RequestEvent]:
    events: list[RequestEvent] = []
    while (event := parser.next_event()) is not NEED_DATA:
        events.append(event)
    return events


@dataclass(frozen=True)
class Rejected:
    """A ``RequestRejected`` that compares by value (exceptions compare by identity)."""

    header: object
    error_type: type
    message: str
    packet_numbers: tuple[int, int] | None


def normalize(events: list[RequestEvent]) -> list[object]:
    """Join each packet's content pieces; make rejections comparable."""
    out: list[object] = []
    for event in events:
        if isinstance(event, PacketContent):
            assert event.data, "an empty content piece is never useful"
            if out and isinstance(out[-1], PacketContent):
                out[-1] = PacketContent(out[-1].data + event.data)
                continue
        if isinstance(event, RequestRejected):
            out.append(
                Rejected(event.header, type(event.error), str(event.error), event.packet_numbers)
            )
            continue
        out.append(event)
    return out


def request_frame(code: int, payload_size: int, payload: bytes = b"", version: int = 3) -> bytes:
    return REQUEST_HEADER.pack(bytes(16), version, code, payload_size) + payload


def assert_broken(parser: RequestParser) -> None:
    with pytest.raises(errors.FramingError):
        parser.next_event()
    with pytest.raises(errors.FramingError):
        parser.receive_data(RegisterRequest(bytes(16), "alice").encode())
    with pytest.raises(errors.FramingError):
        parser.next_event()


# --- (1) anything in, events or a ProtocolError out ---------------------------------


@SETTINGS
@given(blob=request_noise, data=st.data())
def test_any_bytes_in_any_split_give_events_or_a_protocol_error(
    blob: bytes, data: st.DataObject
) -> None:
    parser = RequestParser()
    event_types = (RequestReceived, PacketStarted, PacketContent, PacketFinished, RequestRejected)
    try:
        for piece in split(blob, split_points(data, blob)):
            parser.receive_data(piece)
            for event in drain(parser):
                assert isinstance(event, event_types)
                if isinstance(event, RequestRejected):
                    assert isinstance(event.error, errors.ProtocolError)
                    assert not event.error.fatal
    except errors.FramingError:
        assert_broken(parser)
        return
    except errors.ProtocolError as exc:
        pytest.fail(f"only framing errors may escape the parser, got {exc!r}")
    if parser.in_frame:
        with pytest.raises(errors.TruncatedMessage):
            parser.receive_eof()
    else:
        parser.receive_eof()


@SETTINGS
@given(blob=st.binary(max_size=2000), data=st.data())
def test_pure_noise_in_any_split_gives_events_or_a_protocol_error(
    blob: bytes, data: st.DataObject
) -> None:
    parser = RequestParser()
    try:
        for piece in split(blob, split_points(data, blob)):
            parser.receive_data(piece)
            drain(parser)
    except errors.FramingError:
        assert_broken(parser)


@SETTINGS
@given(blob=response_noise, data=st.data())
def test_any_bytes_to_the_response_parser_give_responses_or_a_response_error(
    blob: bytes, data: st.DataObject
) -> None:
    parser = ResponseParser()
    response_types = (
        Registered,
        RegistrationFailed,
        PublicKeyAccepted,
        FileReceived,
        Acknowledged,
        Reconnected,
        ReconnectDenied,
        ServerError,
    )
    try:
        for piece in split(blob, split_points(data, blob)):
            parser.receive_data(piece)
            while (event := parser.next_event()) is not NEED_DATA:
                assert isinstance(event, response_types)
    except errors.ResponseError:
        pass


# --- (2) splitting never changes the events ----------------------------------------


@st.composite
def skippable_bad_frame(draw: st.DrawFn) -> bytes:
    """Well framed, bad content: the parser must skip it and carry on."""
    kind = draw(st.sampled_from(["unknown", "wrong_size", "short_828", "bad_name_828"]))
    if kind == "unknown":
        code = draw(u16.filter(lambda c: c not in KNOWN_REQUEST_CODES))
        payload = draw(st.binary(max_size=400))
    elif kind == "wrong_size":
        code = draw(st.sampled_from(list(REQUEST_PAYLOAD_SIZES)))
        payload = draw(
            st.binary(max_size=500).filter(lambda p: len(p) != REQUEST_PAYLOAD_SIZES[code])
        )
    elif kind == "short_828":
        code = RequestCode.SEND_FILE
        payload = draw(st.binary(max_size=PACKET_FIELDS.size - 1))
    else:
        code = RequestCode.SEND_FILE
        fields = struct.pack("<IIHH", 16, 1, 1, 1) + bytes(255)  # empty name
        payload = fields + draw(st.binary(max_size=300))
    return request_frame(code, len(payload), payload)


valid_stream = st.lists(
    st.one_of(
        requests.map(lambda r: r.encode()),
        file_packets.map(lambda p: p.encode()),
        skippable_bad_frame(),
    ),
    max_size=8,
).map(b"".join)


@SETTINGS
@given(blob=valid_stream, data=st.data())
def test_a_stream_split_anywhere_gives_the_same_events_as_fed_whole(
    blob: bytes, data: st.DataObject
) -> None:
    whole = RequestParser()
    whole.receive_data(blob)
    expected = normalize(drain(whole))
    whole.receive_eof()

    parser = RequestParser()
    events: list[RequestEvent] = []
    for piece in split(blob, split_points(data, blob)):
        parser.receive_data(piece)
        events.extend(drain(parser))
    parser.receive_eof()
    assert not parser.in_frame
    assert normalize(events) == expected


@SETTINGS
@given(items=st.lists(st.one_of(requests, file_packets), max_size=6), data=st.data())
def test_valid_frames_split_anywhere_give_exactly_the_messages_sent(
    items: list[Request | FilePacket], data: st.DataObject
) -> None:
    expected: list[object] = []
    for item in items:
        if isinstance(item, FilePacket):
            expected.append(PacketStarted(item.header, len(item.content)))
            if item.content:
                expected.append(PacketContent(item.content))
            expected.append(PacketFinished())
        else:
            expected.append(RequestReceived(item))
    blob = b"".join(item.encode() for item in items)
    parser = RequestParser()
    events: list[RequestEvent] = []
    for piece in split(blob, split_points(data, blob)):
        parser.receive_data(piece)
        events.extend(drain(parser))
    assert normalize(events) == expected


@SETTINGS
@given(packet=file_packets, cut=st.integers(min_value=1))
def test_eof_inside_a_frame_is_a_truncated_message(packet: FilePacket, cut: int) -> None:
    frame = packet.encode()
    parser = RequestParser()
    parser.receive_data(frame[: 1 + cut % (len(frame) - 1)])
    drain(parser)
    assert parser.in_frame
    with pytest.raises(errors.TruncatedMessage):
        parser.receive_eof()


# --- (3) 828 content is streamed, never gathered ------------------------------------

HUGE = 0xFFFFFFFF  # the largest payload_size a u32 can claim: about 4 GiB


def huge_packet_start(name: bytes = b"big.bin") -> bytes:
    fields = PACKET_FIELDS.pack(HUGE - 300, HUGE - 310, 1, 1, name + bytes(255 - len(name)))
    return REQUEST_HEADER.pack(bytes(16), VERSION, RequestCode.SEND_FILE, HUGE) + fields


@settings(max_examples=examples(20), deadline=None)
@given(chunk_sizes=st.lists(st.integers(min_value=997, max_value=70_000), min_size=1, max_size=8))
def test_content_of_a_4_gib_packet_is_handed_out_not_buffered(chunk_sizes: list[int]) -> None:
    parser = RequestParser()
    parser.receive_data(huge_packet_start())
    started = drain(parser)
    assert len(started) == 1 and isinstance(started[0], PacketStarted)
    assert started[0].content_length == HUGE - PACKET_FIELDS.size
    assert started[0].packet.file_name == "big.bin"

    total = 1 << 20
    fed = received = 0
    index = 0
    while fed < total:
        size = min(chunk_sizes[index % len(chunk_sizes)], total - fed)
        index += 1
        parser.receive_data(bytes([index % 256]) * size)
        fed += size
        for event in drain(parser):
            assert isinstance(event, PacketContent)  # never finished, never rejected
            received += len(event.data)
        assert received == fed
        assert len(parser._buffer) <= 256
    assert received == total
    assert parser.in_frame
    with pytest.raises(errors.TruncatedMessage):
        parser.receive_eof()


def test_a_4_gib_packet_with_a_bad_name_is_skipped_without_buffering() -> None:
    parser = RequestParser()
    parser.receive_data(huge_packet_start(name=b"bad\x01name"))
    chunk = bytes(64 * 1024)
    for _ in range(16):  # 1 MiB
        parser.receive_data(chunk)
        assert drain(parser) == []
        assert len(parser._buffer) <= 256
    assert parser.in_frame


# --- (4) what is skipped, what closes the connection --------------------------------

FOLLOW = RegisterRequest(bytes(range(16)), "still-here")


@pytest.mark.parametrize("code", [0, 1, 824, 829, 899, 903, 1600, 0xFFFF])
@pytest.mark.parametrize("size", [0, 1, 255, 1000, MAX_SKIP])
def test_an_unknown_code_is_rejected_and_the_next_frame_parses(code: int, size: int) -> None:
    parser = RequestParser()
    parser.receive_data(request_frame(code, size, bytes(size)) + FOLLOW.encode())
    events = drain(parser)
    assert len(events) == 2
    assert isinstance(events[0], RequestRejected)
    assert isinstance(events[0].error, errors.UnknownCode)
    assert events[0].header.code == code
    assert events[1] == RequestReceived(FOLLOW)


def _wrong_fixed_sizes() -> list[tuple[RequestCode, int]]:
    cases = []
    for code, size in REQUEST_PAYLOAD_SIZES.items():
        for wrong in (0, 1, size - 1, size + 1, 2 * size, MAX_SKIP):
            cases.append((code, wrong))
    return cases


@pytest.mark.parametrize(("code", "size"), _wrong_fixed_sizes())
def test_a_wrong_fixed_payload_size_is_rejected_and_the_next_frame_parses(
    code: RequestCode, size: int
) -> None:
    parser = RequestParser()
    parser.receive_data(request_frame(code, size, b"A" * size) + FOLLOW.encode())
    events = drain(parser)
    assert len(events) == 2
    assert isinstance(events[0], RequestRejected)
    assert isinstance(events[0].error, errors.BadPayloadSize)
    assert events[1] == RequestReceived(FOLLOW)


@pytest.mark.parametrize("size", [0, 1, PACKET_FIELDS.size - 1])
def test_an_828_too_short_for_its_fields_is_rejected(size: int) -> None:
    parser = RequestParser()
    parser.receive_data(request_frame(RequestCode.SEND_FILE, size, bytes(size)) + FOLLOW.encode())
    events = drain(parser)
    assert len(events) == 2
    assert isinstance(events[0], RequestRejected)
    assert isinstance(events[0].error, errors.BadPayloadSize)
    assert events[1] == RequestReceived(FOLLOW)


@pytest.mark.parametrize("code", [0, 999, 0xFFFF, *(int(code) for code in REQUEST_PAYLOAD_SIZES)])
@pytest.mark.parametrize("size", [MAX_SKIP + 1, 1 << 20, HUGE])
def test_a_bad_request_too_large_to_skip_is_fatal(code: int, size: int) -> None:
    parser = RequestParser()
    # Only the header: the verdict must come before any of the payload is read.
    parser.receive_data(request_frame(code, size))
    with pytest.raises(errors.PayloadTooLarge):
        parser.next_event()
    assert_broken(parser)


def test_an_828_beyond_the_configured_limit_is_fatal() -> None:
    parser = RequestParser(ParserLimits(max_packet_payload=PACKET_FIELDS.size + 1024))
    parser.receive_data(request_frame(RequestCode.SEND_FILE, PACKET_FIELDS.size + 1025))
    with pytest.raises(errors.PayloadTooLarge):
        parser.next_event()
    assert_broken(parser)


def test_an_828_at_the_configured_limit_is_accepted() -> None:
    limits = ParserLimits(max_packet_payload=PACKET_FIELDS.size + 1024)
    packet = FilePacket(PacketHeader(bytes(16), 1024, 1000, 1, 1, "f"), bytes(1024))
    parser = RequestParser(limits)
    parser.receive_data(packet.encode())
    events = drain(parser)
    assert events[0] == PacketStarted(packet.header, 1024)
    assert events[-1] == PacketFinished()


@pytest.mark.parametrize("version", [0, 1, 2, 4, 255])
@pytest.mark.parametrize("code", [RequestCode.REGISTER, RequestCode.SEND_FILE, 999])
def test_another_version_is_fatal(version: int, code: int) -> None:
    parser = RequestParser()
    parser.receive_data(request_frame(code, 255, version=version))  # header only
    with pytest.raises(errors.UnsupportedVersion):
        parser.next_event()
    assert_broken(parser)


def test_a_framing_error_is_fatal_with_a_valid_frame_already_buffered_behind_it() -> None:
    parser = RequestParser()
    parser.receive_data(request_frame(825, 255, encode_string("x"), version=2) + FOLLOW.encode())
    with pytest.raises(errors.UnsupportedVersion):
        parser.next_event()
    assert_broken(parser)


def test_events_before_a_framing_error_are_delivered() -> None:
    parser = RequestParser()
    parser.receive_data(FOLLOW.encode() + request_frame(999, HUGE))
    assert parser.next_event() == RequestReceived(FOLLOW)
    with pytest.raises(errors.PayloadTooLarge):
        parser.next_event()
