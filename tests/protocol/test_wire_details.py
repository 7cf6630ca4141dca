"""Edges of the wire format and the reason each refusal gives.

The reason text is what an operator reads in the server's log (``detail``) and a user in
the client's error, so it is part of the behaviour. Found by mutation testing
(docs/TESTING.md): these edges and messages were unchecked.
"""

from __future__ import annotations

import pytest

from eft_protocol import errors
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import (
    FileReceived,
    PublicKeyAccepted,
    PublicKeyRequest,
    RegisterRequest,
    RequestHeader,
    ResponseHeader,
    check_response_size,
    decode_response,
    decode_string,
    encode_string,
)

CLIENT_ID = bytes(range(16))


def test_headers_encode_little_endian_in_the_spec_order() -> None:
    assert RequestHeader(CLIENT_ID, 3, 825, 255).encode() == CLIENT_ID + bytes.fromhex(
        "03" + "3903" + "ff000000"
    )
    assert ResponseHeader(3, 1603, 279).encode() == bytes.fromhex("03" + "4306" + "17010000")


@pytest.mark.parametrize("size", [0, 16, 64])
def test_a_1606_of_any_size_up_to_64_is_read(size: int) -> None:
    check_response_size(ResponseCode.RECONNECT_DENIED, size)


def test_a_1606_over_64_bytes_and_a_short_1604_are_refused_with_the_sizes() -> None:
    with pytest.raises(errors.ResponseError, match="response 1606 carries 65 bytes, expected 16"):
        check_response_size(ResponseCode.RECONNECT_DENIED, 65)
    check_response_size(ResponseCode.ACKNOWLEDGED, 0)  # the empty 1604 of spec section 8
    with pytest.raises(errors.ResponseError, match="response 1604 carries 1 bytes, expected 16"):
        check_response_size(ResponseCode.ACKNOWLEDGED, 1)


@pytest.mark.parametrize(
    ("field", "why"),
    [
        (b"name\0" + bytes(249), "string field is 254 bytes, not 255"),
        (b"x" * 255, "string field has no terminating NUL"),
        (bytes(255), "string field is empty"),
        (b"\0junk" + bytes(250), "string field is empty"),
        (b"caf\xc3\xa9\0" + bytes(249), "string field is not ASCII"),
        (b"tab\there\0" + bytes(246), "string has non-ASCII or control characters"),
    ],
)
def test_each_bad_string_field_says_why(field: bytes, why: str) -> None:
    with pytest.raises(errors.BadStringField) as refused:
        decode_string(field)
    assert str(refused.value) == why


def test_a_string_too_long_for_the_field_is_refused_when_encoding() -> None:
    assert encode_string("x" * 254) == b"x" * 254 + b"\0"
    with pytest.raises(errors.BadStringField, match="string is 255 characters, at most 254 fit"):
        encode_string("x" * 255)


def test_frames_with_wrong_sized_parts_are_refused_before_sending() -> None:
    with pytest.raises(ValueError, match=r"^client id must be 16 bytes, got 15$"):
        RegisterRequest(bytes(15), "alice").encode()
    with pytest.raises(ValueError, match=r"^public key must be 160 bytes$"):
        PublicKeyRequest(CLIENT_ID, "alice", bytes(159)).encode()
    with pytest.raises(ValueError, match=r"^an RSA-1024 OAEP ciphertext is 128 bytes$"):
        PublicKeyAccepted(CLIENT_ID, bytes(127)).encode()


def _header(code: int, size: int, version: int = 3) -> ResponseHeader:
    return ResponseHeader(version, code, size)


def test_each_bad_response_says_why() -> None:
    cases: list[tuple[ResponseHeader, bytes, str]] = [
        (_header(1600, 16, version=4), CLIENT_ID, "response has version 4, expected 3"),
        (_header(1234, 0), b"", "unknown response code 1234"),
        (_header(1600, 16), CLIENT_ID[:10], "response payload is shorter than its header says"),
    ]
    good = FileReceived(CLIENT_ID, 16, "f.txt", 1).encode()[7:]
    bad_name = good[:20] + b"\x01" + good[21:]  # a control character in the file name
    cases.append((_header(1603, len(good)), bad_name, "response 1603: string has non-ASCII"))
    for header, payload, why in cases:
        with pytest.raises(errors.ResponseError) as refused:
            decode_response(header, payload)
        assert str(refused.value).startswith(why), (str(refused.value), why)
