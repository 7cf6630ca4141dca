"""The version-3 numbers in codes.py against docs/PROTOCOL-v3.md, hard-coded from the
spec's tables (sections 1-3), and the padded size against a real encryption."""

from __future__ import annotations

import pytest

from eft_protocol import codes, crypto
from eft_protocol.codes import RequestCode, ResponseCode, padded_size


def test_header_and_packet_field_sizes_are_the_specs() -> None:
    assert codes.REQUEST_HEADER.size == 23
    assert codes.RESPONSE_HEADER.size == 7
    assert codes.PACKET_FIELDS.size == 267
    # little-endian, no padding: code 828 is "3c 03" on the wire
    assert codes.REQUEST_HEADER.pack(bytes(16), 3, 828, 1)[16:] == b"\x03\x3c\x03\x01\x00\x00\x00"
    assert codes.RESPONSE_HEADER.pack(3, 1603, 279) == b"\x03\x43\x06\x17\x01\x00\x00"


def test_each_code_and_its_payload_size_are_the_specs() -> None:
    assert {int(c): size for c, size in codes.REQUEST_PAYLOAD_SIZES.items()} == {
        825: 255,
        826: 415,
        827: 255,
        900: 255,
        901: 255,
        902: 255,
    }
    assert {int(c): size for c, size in codes.RESPONSE_PAYLOAD_SIZES.items()} == {
        1600: 16,
        1601: 0,
        1602: 144,
        1603: 279,
        1604: 16,
        1605: 144,
        1606: 16,
        1607: 0,
    }
    assert RequestCode.SEND_FILE == 828 and RequestCode.SEND_FILE not in codes.REQUEST_PAYLOAD_SIZES
    assert list(ResponseCode) == list(codes.RESPONSE_PAYLOAD_SIZES)


def test_the_limits_of_one_file() -> None:
    assert codes.MAX_PACKETS == 65535
    assert codes.MAX_FILE_SIZE == 4_294_967_279  # 4 GiB - 17: the padded size fits a u32
    assert padded_size(codes.MAX_FILE_SIZE) == 0xFFFFFFFF - 15
    assert padded_size(codes.MAX_FILE_SIZE + 16) > 0xFFFFFFFF
    assert codes.MAX_FILE_ATTEMPTS == 4


@pytest.mark.parametrize(
    ("plain", "padded"), [(0, 16), (1, 16), (15, 16), (16, 32), (17, 32), (31, 32), (32, 48)]
)
def test_padding_always_adds_one_to_sixteen_bytes(plain: int, padded: int) -> None:
    assert padded_size(plain) == padded
    assert len(crypto.encrypt_file_bytes(bytes(32), bytes(plain))) == padded
