"""Every version-3 message survives encode -> parse unchanged; bad fields are refused.

Requests go through ``parser.RequestParser`` (the server's real reader), responses through
``parser.ResponseParser`` (the client's), so these tests pin the encoders and the parsers
against each other as well as against the sizes of spec sections 2 and 3.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eft_protocol import errors
from eft_protocol.codes import (
    NAME_FIELD_SIZE,
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
    RequestHeader,
    Response,
    ResponseHeader,
    ServerError,
    decode_request,
    decode_response,
    decode_string,
    encode_string,
)
from tests.support.examples import examples

SETTINGS = settings(max_examples=examples(200), deadline=None)

# --- strategies -------------------------------------------------------------------

printable_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
names = st.text(alphabet=printable_ascii, min_size=1, max_size=254)
client_ids = st.binary(min_size=16, max_size=16)
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
public_keys = st.binary(min_size=160, max_size=160)  # the wire does not validate keys
wrapped_keys = st.binary(min_size=128, max_size=128)

requests: st.SearchStrategy[Request] = st.one_of(
    st.builds(RegisterRequest, client_ids, names),
    st.builds(PublicKeyRequest, client_ids, names, public_keys),
    st.builds(ReconnectRequest, client_ids, names),
    st.builds(CrcOkRequest, client_ids, names),
    st.builds(CrcRetryRequest, client_ids, names),
    st.builds(CrcGiveUpRequest, client_ids, names),
)

packet_headers = st.builds(PacketHeader, client_ids, u32, u32, u16, u16, names)
file_packets = st.builds(FilePacket, packet_headers, st.binary(max_size=2048))

responses: st.SearchStrategy[Response] = st.one_of(
    st.builds(Registered, client_ids),
    st.just(RegistrationFailed()),
    st.builds(PublicKeyAccepted, client_ids, wrapped_keys),
    st.builds(FileReceived, client_ids, u32, names, u32),
    st.builds(Acknowledged, client_ids),
    st.builds(Reconnected, client_ids, wrapped_keys),
    st.builds(ReconnectDenied, client_ids),
    st.just(ServerError()),
)


# --- helpers ----------------------------------------------------------------------


def drain(parser: RequestParser) -> list[RequestEvent]:
    events: list[RequestEvent] = []
    while (event := parser.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def parse_requests(data: bytes) -> list[RequestEvent]:
    parser = RequestParser()
    parser.receive_data(data)
    events = drain(parser)
    assert not parser.in_frame
    parser.receive_eof()  # must not raise: the stream ended between frames
    return events


def parse_responses(data: bytes) -> list[Response]:
    parser = ResponseParser()
    parser.receive_data(data)
    found: list[Response] = []
    while (event := parser.next_event()) is not NEED_DATA:
        found.append(event)
    assert not parser.in_frame
    return found


def request_frame(code: int, payload: bytes, client_id: bytes = bytes(16)) -> bytes:
    return REQUEST_HEADER.pack(client_id, VERSION, code, len(payload)) + payload


def response_frame(code: int, payload: bytes, version: int = VERSION) -> bytes:
    return RESPONSE_HEADER.pack(version, code, len(payload)) + payload


def name_field(raw: bytes) -> bytes:
    assert len(raw) <= NAME_FIELD_SIZE
    return raw + bytes(NAME_FIELD_SIZE - len(raw))


# --- requests ---------------------------------------------------------------------


@SETTINGS
@given(request=requests)
def test_every_request_round_trips_through_the_parser(request: Request) -> None:
    frame = request.encode()
    header = RequestHeader.decode(frame[: RequestHeader.SIZE])
    assert header == RequestHeader(
        request.client_id, VERSION, int(request.code), REQUEST_PAYLOAD_SIZES[request.code]
    )
    assert len(frame) == RequestHeader.SIZE + REQUEST_PAYLOAD_SIZES[request.code]
    assert parse_requests(frame) == [RequestReceived(request)]
    assert decode_request(header, frame[RequestHeader.SIZE :]) == request


@SETTINGS
@given(packet=file_packets)
def test_every_file_packet_round_trips_as_streamed_events(packet: FilePacket) -> None:
    frame = packet.encode()
    header = RequestHeader.decode(frame[: RequestHeader.SIZE])
    assert header.code == RequestCode.SEND_FILE
    assert header.client_id == packet.header.client_id
    assert header.payload_size == PACKET_FIELDS.size + len(packet.content) == len(frame) - 23

    events = parse_requests(frame)
    assert events[0] == PacketStarted(packet.header, len(packet.content))
    assert events[-1] == PacketFinished()
    middle = events[1:-1]
    assert all(isinstance(event, PacketContent) for event in middle)
    assert b"".join(event.data for event in middle) == packet.content  # type: ignore[union-attr]


@SETTINGS
@given(packet=file_packets)
def test_encode_frame_start_is_the_packet_without_its_content(packet: FilePacket) -> None:
    start = packet.header.encode_frame_start(len(packet.content))
    assert start + packet.content == packet.encode()
    assert len(start) == RequestHeader.SIZE + PACKET_FIELDS.size


@SETTINGS
@given(items=st.lists(st.one_of(requests, file_packets), max_size=8))
def test_a_stream_of_frames_parses_back_in_order(items: list[Request | FilePacket]) -> None:
    expected: list[RequestEvent] = []
    for item in items:
        if isinstance(item, FilePacket):
            expected.append(PacketStarted(item.header, len(item.content)))
            if item.content:
                expected.append(PacketContent(item.content))
            expected.append(PacketFinished())
        else:
            expected.append(RequestReceived(item))
    assert parse_requests(b"".join(item.encode() for item in items)) == expected


def test_requests_refuse_to_encode_a_client_id_that_is_not_16_bytes() -> None:
    with pytest.raises(ValueError):
        RegisterRequest(bytes(15), "alice").encode()
    with pytest.raises(ValueError):
        PacketHeader(bytes(17), 16, 0, 1, 1, "f").encode_frame_start(16)
    with pytest.raises(ValueError):
        PublicKeyRequest(bytes(16), "alice", bytes(159)).encode()


# --- string fields ----------------------------------------------------------------

BAD_FIELDS = {
    "no NUL": b"A" * NAME_FIELD_SIZE,
    "empty": bytes(NAME_FIELD_SIZE),
    "non-ASCII": name_field("café".encode()),
    "latin-1": name_field(b"caf\xe9"),
    "tab": name_field(b"a\tb"),
    "newline": name_field(b"name\n"),
    "SOH": name_field(b"\x01"),
    "DEL": name_field(b"abc\x7f"),
    "ESC": name_field(b"\x1b[31mred"),
}


@pytest.mark.parametrize("field_bytes", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_decode_string_refuses_bad_fields(field_bytes: bytes) -> None:
    with pytest.raises(errors.BadStringField):
        decode_string(field_bytes)


@pytest.mark.parametrize("size", [0, 1, 254, 256])
def test_decode_string_refuses_a_field_of_the_wrong_size(size: int) -> None:
    with pytest.raises(errors.BadStringField):
        decode_string(b"a" + bytes(size - 1) if size else b"")


@SETTINGS
@given(
    prefix=st.text(alphabet=printable_ascii, max_size=20),
    bad=st.integers(min_value=1, max_value=255).filter(lambda b: not 0x20 <= b <= 0x7E),
    data=st.data(),
)
def test_any_control_or_non_ascii_byte_before_the_nul_is_refused(
    prefix: str, bad: int, data: st.DataObject
) -> None:
    raw = prefix.encode() + bytes([bad])
    tail = data.draw(st.binary(min_size=0, max_size=NAME_FIELD_SIZE - len(raw) - 1))
    field_bytes = name_field(raw + b"\x00" + tail)
    with pytest.raises(errors.BadStringField):
        decode_string(field_bytes)


@pytest.mark.parametrize("text", ["", "a\tb", "line\n", "café", "\x00", "a" * 255])
def test_encode_string_refuses_what_decode_would_refuse(text: str) -> None:
    with pytest.raises(errors.BadStringField):
        encode_string(text)


def test_the_longest_string_fits_with_its_nul() -> None:
    field_bytes = encode_string("x" * 254)
    assert len(field_bytes) == NAME_FIELD_SIZE
    assert field_bytes[-1] == 0
    assert decode_string(field_bytes) == "x" * 254


@SETTINGS
@given(name=names, junk=st.binary(min_size=NAME_FIELD_SIZE, max_size=NAME_FIELD_SIZE))
def test_junk_after_the_nul_is_ignored(name: str, junk: bytes) -> None:
    raw = name.encode() + b"\x00"
    field_bytes = raw + junk[len(raw) :]
    assert decode_string(field_bytes) == name
    events = parse_requests(request_frame(RequestCode.REGISTER, field_bytes))
    assert events == [RequestReceived(RegisterRequest(bytes(16), name))]


@pytest.mark.parametrize(
    "code",
    [
        RequestCode.REGISTER,
        RequestCode.RECONNECT,
        RequestCode.SEND_PUBLIC_KEY,
        RequestCode.CRC_OK,
        RequestCode.CRC_RETRY,
        RequestCode.CRC_GIVE_UP,
    ],
)
@pytest.mark.parametrize("field_bytes", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_request_with_a_bad_string_is_rejected_and_the_stream_goes_on(
    code: RequestCode, field_bytes: bytes
) -> None:
    payload = field_bytes + bytes(REQUEST_PAYLOAD_SIZES[code] - NAME_FIELD_SIZE)
    follow = RegisterRequest(bytes(16), "next")
    events = parse_requests(request_frame(code, payload) + follow.encode())
    assert len(events) == 2
    rejected, received = events
    assert isinstance(rejected, RequestRejected)
    assert isinstance(rejected.error, errors.BadStringField)
    assert rejected.header.code == code
    assert received == RequestReceived(follow)


@pytest.mark.parametrize("field_bytes", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_file_packet_with_a_bad_name_is_rejected_with_its_numbers(field_bytes: bytes) -> None:
    content = bytes(range(48))
    fields = struct.pack("<IIHH", 48, 40, 2, 3) + field_bytes
    frame = request_frame(RequestCode.SEND_FILE, fields + content)
    follow = CrcOkRequest(bytes(16), "f.txt")
    events = parse_requests(frame + follow.encode())
    assert len(events) == 2
    rejected = events[0]
    assert isinstance(rejected, RequestRejected)
    assert isinstance(rejected.error, errors.BadStringField)
    assert rejected.packet_numbers == (2, 3)
    assert events[1] == RequestReceived(follow)


# --- responses --------------------------------------------------------------------


@SETTINGS
@given(response=responses)
def test_every_response_round_trips_through_the_parser(response: Response) -> None:
    frame = response.encode()
    header = ResponseHeader.decode(frame[: ResponseHeader.SIZE])
    assert header == ResponseHeader(
        VERSION, int(response.code), RESPONSE_PAYLOAD_SIZES[response.code]
    )
    assert len(frame) == ResponseHeader.SIZE + RESPONSE_PAYLOAD_SIZES[response.code]
    assert parse_responses(frame) == [response]
    assert decode_response(header, frame[ResponseHeader.SIZE :]) == response


@SETTINGS
@given(items=st.lists(responses, max_size=8))
def test_a_stream_of_responses_parses_back_in_order(items: list[Response]) -> None:
    assert parse_responses(b"".join(item.encode() for item in items)) == items


def test_an_empty_1606_decodes() -> None:
    frame = response_frame(ResponseCode.RECONNECT_DENIED, b"")
    assert len(frame) == 7
    assert parse_responses(frame) == [ReconnectDenied(b"")]
    assert decode_response(ResponseHeader.decode(frame), b"") == ReconnectDenied(b"")


@pytest.mark.parametrize("size", [0, 1, 15, 17, 64])
def test_a_1606_of_any_short_size_is_read_whole(size: int) -> None:
    frame = (
        response_frame(ResponseCode.RECONNECT_DENIED, bytes(size)) + Registered(bytes(16)).encode()
    )
    assert parse_responses(frame) == [ReconnectDenied(bytes(size)), Registered(bytes(16))]


def test_an_empty_1606_followed_by_another_response() -> None:
    frame = response_frame(ResponseCode.RECONNECT_DENIED, b"") + Registered(bytes(16)).encode()
    assert parse_responses(frame) == [ReconnectDenied(b""), Registered(bytes(16))]


def test_an_empty_1604_followed_by_another_response() -> None:
    frame = response_frame(ResponseCode.ACKNOWLEDGED, b"") + Registered(bytes(16)).encode()
    assert parse_responses(frame) == [Acknowledged(b""), Registered(bytes(16))]


def _wrong_sizes() -> list[tuple[ResponseCode, int]]:
    cases = []
    for code, size in RESPONSE_PAYLOAD_SIZES.items():
        for wrong in {0, 1, size - 1, size + 1, 0xFFFFFFFF}:
            if wrong < 0 or wrong == size:
                continue
            if code is ResponseCode.RECONNECT_DENIED and wrong <= 64:
                continue  # 1606 is read whatever its (short) size, spec section 8
            if code is ResponseCode.ACKNOWLEDGED and wrong == 0:
                continue  # an empty 1604 is read too, spec section 8
            cases.append((code, wrong))
    return cases


@pytest.mark.parametrize(("code", "size"), _wrong_sizes())
def test_a_response_of_the_wrong_size_is_refused_from_its_header(
    code: ResponseCode, size: int
) -> None:
    parser = ResponseParser()
    parser.receive_data(RESPONSE_HEADER.pack(VERSION, code, size))
    # Refused before any payload arrives: a bogus size must not make the client wait.
    with pytest.raises(errors.ResponseError):
        parser.next_event()
    with pytest.raises(errors.ResponseError):
        decode_response(ResponseHeader(VERSION, code, size), bytes(min(size, 300)))


@pytest.mark.parametrize("version", [0, 1, 2, 4, 255])
def test_a_response_of_another_version_is_refused(version: int) -> None:
    frame = response_frame(ResponseCode.REGISTERED, bytes(16), version=version)
    with pytest.raises(errors.ResponseError):
        parse_responses(frame)
    with pytest.raises(errors.ResponseError):
        decode_response(ResponseHeader.decode(frame[:7]), frame[7:])


@pytest.mark.parametrize("code", [0, 825, 828, 1599, 1608, 1700, 0xFFFF])
def test_an_unknown_response_code_is_refused(code: int) -> None:
    frame = response_frame(code, bytes(16))
    with pytest.raises(errors.ResponseError):
        parse_responses(frame)
    with pytest.raises(errors.ResponseError):
        decode_response(ResponseHeader.decode(frame[:7]), frame[7:])


def test_a_response_payload_shorter_than_its_header_is_refused() -> None:
    header = ResponseHeader(VERSION, ResponseCode.REGISTERED, 16)
    with pytest.raises(errors.ResponseError):
        decode_response(header, bytes(15))


@pytest.mark.parametrize("field_bytes", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_1603_with_a_bad_file_name_is_a_response_error(field_bytes: bytes) -> None:
    payload = bytes(16) + struct.pack("<I", 16) + field_bytes + struct.pack("<I", 1)
    frame = response_frame(ResponseCode.FILE_RECEIVED, payload)
    with pytest.raises(errors.ResponseError):
        parse_responses(frame)


def test_a_1603_with_junk_after_the_name_decodes() -> None:
    name = name_field(b"report.pdf\x00" + b"\xff\x01junk")
    payload = bytes(range(16)) + struct.pack("<I", 32) + name + struct.pack("<I", 0xDEADBEEF)
    frame = response_frame(ResponseCode.FILE_RECEIVED, payload)
    assert parse_responses(frame) == [FileReceived(bytes(range(16)), 32, "report.pdf", 0xDEADBEEF)]


def test_responses_refuse_to_encode_bad_fields() -> None:
    with pytest.raises(ValueError):
        Registered(bytes(15)).encode()
    with pytest.raises(ValueError):
        PublicKeyAccepted(bytes(16), bytes(127)).encode()
    with pytest.raises(ValueError):
        Reconnected(bytes(16), bytes(129)).encode()
    with pytest.raises(errors.BadStringField):
        FileReceived(bytes(16), 16, "", 0).encode()
