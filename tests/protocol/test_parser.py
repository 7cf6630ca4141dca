"""The streaming parsers, example by example: the frame count a driver's deadlines key
on, a refusal's packet numbers not leaking into the next refusal, and what each framing
and response error says (the line an operator reads in the log)."""

from __future__ import annotations

import re

import pytest

from eft_protocol import errors
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, RESPONSE_HEADER, RequestCode
from eft_protocol.parser import (
    NEED_DATA,
    PacketContent,
    PacketFinished,
    PacketStarted,
    ParserLimits,
    RequestParser,
    RequestReceived,
    RequestRejected,
    ResponseParser,
)
from eft_protocol.wire import CrcOkRequest, FilePacket, PacketHeader, encode_string

CLIENT_ID = bytes(range(16))


def frame(code: int, payload: bytes, version: int = 3) -> bytes:
    return REQUEST_HEADER.pack(CLIENT_ID, version, code, len(payload)) + payload


def test_each_header_read_counts_one_frame() -> None:
    parser = RequestParser()
    assert parser.frames_started == 0
    ok = CrcOkRequest(CLIENT_ID, "a.bin").encode()
    parser.receive_data(ok + ok[: REQUEST_HEADER.size])
    assert isinstance(parser.next_event(), RequestReceived)
    assert parser.frames_started == 1
    assert parser.next_event() is NEED_DATA  # the second header is in: a second frame
    assert parser.frames_started == 2
    parser.receive_data(ok[REQUEST_HEADER.size :] + frame(RequestCode.CRC_OK, bytes(3)))
    assert isinstance(parser.next_event(), RequestReceived)
    assert isinstance(parser.next_event(), RequestRejected)
    assert parser.frames_started == 3


def test_a_refusal_that_is_not_of_a_packet_has_no_packet_numbers() -> None:
    parser = RequestParser()
    parser.receive_data(frame(RequestCode.CRC_OK, bytes(3)))
    event = parser.next_event()
    assert isinstance(event, RequestRejected)
    assert event.packet_numbers is None


def test_content_arriving_in_pieces_comes_out_in_order() -> None:
    content = bytes(range(64))
    packet = FilePacket(PacketHeader(CLIENT_ID, 64, 60, 1, 1, "a.bin"), content).encode()
    fields_end = REQUEST_HEADER.size + PACKET_FIELDS.size
    parser = RequestParser()
    parser.receive_data(packet[: fields_end + 10])  # the fields and 10 bytes of content
    assert isinstance(parser.next_event(), PacketStarted)
    parser.receive_data(packet[fields_end + 10 : fields_end + 40])  # buffered bytes wait
    parser.receive_data(packet[fields_end + 40 :])
    pieces = []
    while not isinstance(event := parser.next_event(), PacketFinished):
        assert isinstance(event, PacketContent)
        pieces.append(event.data)
    assert b"".join(pieces) == content


def test_a_refused_packets_numbers_do_not_stick_to_the_next_refusal() -> None:
    bad_name = PACKET_FIELDS.pack(16, 5, 2, 3, b"\x00" * 255)  # an empty file name field
    parser = RequestParser()
    parser.receive_data(frame(RequestCode.SEND_FILE, bad_name + bytes(16)))
    first = parser.next_event()
    assert isinstance(first, RequestRejected)
    assert isinstance(first.error, errors.BadStringField)
    assert first.packet_numbers == (2, 3)
    parser.receive_data(frame(RequestCode.CRC_OK, bytes(3)))  # a wrong payload size
    second = parser.next_event()
    assert isinstance(second, RequestRejected)
    assert isinstance(second.error, errors.BadPayloadSize)
    assert second.packet_numbers is None
    good = FilePacket(PacketHeader(CLIENT_ID, 16, 5, 1, 1, "a.bin"), bytes(16)).encode()
    bad_size = REQUEST_HEADER.pack(CLIENT_ID, 3, RequestCode.SEND_FILE, 10) + bytes(10)
    parser.receive_data(good + bad_size)
    while not isinstance(event := parser.next_event(), RequestRejected):
        assert event is not NEED_DATA
    assert event.packet_numbers is None  # too short for numbers: none are made up


def test_what_each_framing_error_says() -> None:
    parser = RequestParser()
    parser.receive_data(frame(RequestCode.CRC_OK, encode_string("a.bin"), version=4))
    with pytest.raises(errors.UnsupportedVersion, match=r"^version 4 is not supported$"):
        parser.next_event()
    with pytest.raises(errors.FramingError, match=r"^parser already failed; close the connection$"):
        parser.receive_data(b"more")
    with pytest.raises(errors.FramingError, match=r"^parser already failed; close the connection$"):
        parser.next_event()
    large = RequestParser(ParserLimits(max_packet_payload=1000))
    large.receive_data(REQUEST_HEADER.pack(CLIENT_ID, 3, RequestCode.SEND_FILE, 1001))
    with pytest.raises(errors.PayloadTooLarge, match=r"^828 payload of 1001 bytes exceeds 1000$"):
        large.next_event()
    small = RequestParser(ParserLimits(max_skip=100))
    small.receive_data(REQUEST_HEADER.pack(CLIENT_ID, 3, 4242, 101))
    with pytest.raises(
        errors.PayloadTooLarge,
        match=r"^unknown request code 4242; and 101 bytes are too many to skip$",
    ):
        small.next_event()
    cut = RequestParser()
    cut.receive_data(frame(RequestCode.CRC_OK, encode_string("a.bin"))[:30])
    assert cut.next_event() is NEED_DATA
    with pytest.raises(
        errors.TruncatedMessage, match=r"^connection closed in the middle of a request$"
    ):
        cut.receive_eof()


def test_what_each_response_refusal_says() -> None:
    parser = ResponseParser()
    parser.receive_data(RESPONSE_HEADER.pack(4, 1604, 16))
    with pytest.raises(errors.ResponseError, match=r"^response version 4, expected 3$"):
        parser.next_event()
    parser = ResponseParser()
    parser.receive_data(RESPONSE_HEADER.pack(3, 1699, 0))
    with pytest.raises(errors.ResponseError, match=r"^unknown response code 1699$"):
        parser.next_event()


@pytest.mark.parametrize(
    ("code", "payload_size", "error", "message"),
    [
        (4242, 0, errors.UnknownCode, r"^unknown request code 4242$"),
        (828, 10, errors.BadPayloadSize, r"^828 payload of 10 bytes$"),
        (900, 3, errors.BadPayloadSize, r"^900 payload is 3 bytes, not 255$"),
        (826, 255, errors.BadPayloadSize, r"^826 payload is 255 bytes, not 415$"),
    ],
)
def test_what_each_skipped_request_says(
    code: int, payload_size: int, error: type[errors.ProtocolError], message: str
) -> None:
    parser = RequestParser()
    parser.receive_data(frame(code, bytes(payload_size)))
    event = parser.next_event()
    assert isinstance(event, RequestRejected)
    assert type(event.error) is error
    assert re.search(message, str(event.error))
