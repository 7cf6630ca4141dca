"""The version-4 handshake's pieces, one at a time: headers, the offer, the server hello,
the intent and the names (docs/PROTOCOL-v4.md section 3). The vectors run them together;
these pin each field and each bound, so that a changed byte or an off-by-one fails here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest

from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode
from eft_protocol.errors import ProtocolError
from eft_protocol.v4 import handshake as hs
from eft_protocol.v4.handshake import (
    FEATURE_NEXT_KEY,
    FEATURE_PACK,
    FEATURE_STREAM,
    FEATURE_WIDE_WINDOW,
    HandshakeError,
    Intent,
    NoCommonRevision,
    Offer,
    ServerHello,
)


def test_the_constants_the_wire_depends_on() -> None:
    assert hs.VERSION == 4
    assert hs.NOISE_PROTOCOL_NAME == b"Noise_XX_25519_AESGCM_SHA256"
    assert sorted(hs.SUPPORTED_REVISIONS) == [2]
    features = FEATURE_NEXT_KEY | FEATURE_STREAM | FEATURE_WIDE_WINDOW | FEATURE_PACK
    assert hs.SUPPORTED_FEATURES == features == 15
    assert (hs.HELLO_SIZE, hs.MAX_HELLO_SIZE, hs.SERVER_HELLO_SIZE) == (38, 96, 116)
    assert (hs.MIN_INTENT_MESSAGE, hs.MAX_INTENT_MESSAGE) == (69, 232)
    assert issubclass(HandshakeError, ProtocolError)
    assert HandshakeError.fatal is True
    assert HandshakeError.reason == "handshake"
    assert NoCommonRevision.reason == "no_common_revision"


def test_the_hello_header_is_zero_id_version_826_and_size() -> None:
    header = hs.hello_header()
    assert header == bytes(16) + b"\x04" + struct.pack("<H", 826) + struct.pack("<I", 38)
    assert hs.hello_header(50)[19:23] == (50).to_bytes(4, "little")
    assert hs.revision_1_hello_header() == hs.hello_header(32)


@pytest.mark.parametrize(
    ("size", "accepted"), [(37, False), (38, True), (60, True), (96, True), (97, False)]
)
def test_a_hello_header_is_recognised_within_its_size_bounds(size: int, accepted: bool) -> None:
    assert hs.is_hello_header(hs.hello_header(size)) is accepted


def test_a_hello_header_with_any_other_field_changed_is_not_one() -> None:
    good = hs.hello_header()
    assert hs.is_hello_header(good)
    for index in range(19):  # the id, the version, the code (not the size)
        altered = bytearray(good)
        altered[index] ^= 0x01
        assert not hs.is_hello_header(bytes(altered)), index
    assert not hs.is_hello_header(hs.intent_header(RequestCode.REGISTER, 38))


def test_a_hello_header_of_another_length_is_not_one() -> None:
    good = hs.hello_header()
    assert not hs.is_hello_header(good + b"\x00")
    assert not hs.is_hello_header(good[:-1])  # its size read from 3 bytes is still 38


def test_the_revision_1_answers() -> None:
    assert hs.revision_1_server_hello(1000, True) == struct.pack("<BBHQ", 4, 1, 0, 1000)
    assert hs.revision_1_server_hello(7, False) == struct.pack("<BBHQ", 4, 0, 0, 7)
    # the server's default limit, 2**63, fits the unsigned field
    assert hs.revision_1_server_hello(1 << 63, True)[4:] == (1 << 63).to_bytes(8, "little")
    assert hs.revision_1_server_hello_header() == RESPONSE_HEADER.pack(
        4, ResponseCode.PUBLIC_KEY_ACCEPTED, 32 + 48 + 12 + 16
    )


def test_the_server_hello_and_cookie_headers() -> None:
    assert hs.server_hello_header() == RESPONSE_HEADER.pack(4, 1602, 116)
    assert hs.server_hello_header(FEATURE_STREAM) == RESPONSE_HEADER.pack(4, 1602, 116)
    assert hs.server_hello_header(FEATURE_NEXT_KEY) == RESPONSE_HEADER.pack(4, 1602, 180)
    assert hs.server_hello_header(3) == RESPONSE_HEADER.pack(4, 1602, 180)
    assert hs.cookie_reply_header() == RESPONSE_HEADER.pack(4, 1602, 16)


def test_the_cookie_is_the_16_bytes_after_the_offer_fields_unless_all_zero() -> None:
    cookie = bytes(range(1, 17))
    assert hs.cookie_in(b"\xff" * 6 + cookie) == cookie
    assert hs.cookie_in(b"\xff" * 6 + cookie + b"later") == cookie
    assert hs.cookie_in(b"\xff" * 6 + cookie[:15]) == b""
    assert hs.cookie_in(b"\xff" * 6 + bytes(16)) == b""
    assert hs.cookie_in(b"\xff" * 6 + bytes(15) + b"\x01") == bytes(15) + b"\x01"
    assert hs.cookie_in(b"\xff" * 6) == b""


def test_the_next_key_proof_is_an_hmac_of_both_keys() -> None:
    shared, current, following = b"s" * 32, b"c" * 32, b"n" * 32
    expected = hmac.digest(shared, b"eft/4 next-key" + current + following, "sha256")
    assert hs.next_key_proof(shared, current, following) == expected
    assert len(expected) == 32


def test_the_intent_header_prologue_id_and_fingerprint() -> None:
    assert hs.intent_header(RequestCode.RECONNECT, 99) == REQUEST_HEADER.pack(
        bytes(16), 4, RequestCode.RECONNECT, 99
    )
    assert hs.prologue(b"HEADER") == b"eft/4HEADER"
    key = bytes(range(32))
    assert hs.client_id_for(key) == hashlib.sha256(b"eft/4 client-id" + key).digest()[:16]
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode()
    assert digest.endswith("=")
    assert hs.fingerprint(key) == "SHA256:" + digest.rstrip("=")


def test_revisions_are_bits() -> None:
    assert hs.revision_bits({2}) == 4
    assert hs.revision_bits({0, 2, 15}) == 1 + 4 + (1 << 15)
    assert hs.revision_bits(set()) == 0
    assert hs.revisions_in(1 + 4 + (1 << 15)) == frozenset({0, 2, 15})
    assert hs.revisions_in(1 << 16) == frozenset()
    assert hs.revisions_in(0xFFFF) == frozenset(range(16))


def test_an_offer_encodes_its_fields_then_its_cookie() -> None:
    assert Offer().encode() == struct.pack("<HI", 4, 15)
    cookie = b"\x07" * 16
    offer = Offer(frozenset({1, 2}), 0x8000_0002, cookie)
    assert offer.encode() == struct.pack("<HI", 6, 0x8000_0002) + cookie
    assert Offer.decode(offer.encode()) == offer


@pytest.mark.parametrize("size", [5, 65])
def test_an_offer_out_of_its_bounds_is_refused(size: int) -> None:
    with pytest.raises(HandshakeError, match=r"^the offer is not 6 to 64 bytes$"):
        Offer.decode(b"\x04" + bytes(size - 1))


@pytest.mark.parametrize("size", [6, 64])
def test_an_offer_at_its_bounds_is_read(size: int) -> None:
    data = struct.pack("<HI", 4, 1) + b"\x00" * (size - 6)
    assert Offer.decode(data) == Offer(frozenset({2}), 1, b"")


def test_the_server_selects_the_highest_common_revision_and_known_features() -> None:
    assert Offer(frozenset({1, 2, 3}), 0xFFFF_FFFF).select() == (2, 15)
    assert Offer(frozenset({3}), FEATURE_STREAM).select() == (0, FEATURE_STREAM)
    assert Offer(frozenset(), 0).select() == (0, 0)


def test_a_server_hello_encodes_every_field() -> None:
    hello = ServerHello(1 << 40, False, features=FEATURE_STREAM)
    assert hello.encode() == struct.pack("<BBBBHHIQ", 4, 0, 2, 0, 4, 0, 2, 1 << 40)
    assert ServerHello(5).encode()[1] == 1
    assert ServerHello.decode(hello.encode()) == hello


def test_a_server_hello_with_the_next_key_carries_it() -> None:
    key, proof = b"k" * 32, b"p" * 32
    hello = ServerHello(9, features=FEATURE_NEXT_KEY, next_key=key, next_key_proof=proof)
    data = hello.encode()
    assert len(data) == 20 + 64
    assert data[20:] == key + proof
    decoded = ServerHello.decode(data)
    assert (decoded.next_key, decoded.next_key_proof) == (key, proof)
    assert type(decoded.next_key) is bytes
    assert decoded == hello


@pytest.mark.parametrize(
    ("features", "extension"),
    [(FEATURE_NEXT_KEY, b""), (FEATURE_NEXT_KEY, b"x" * 63), (0, b"x" * 64), (2, b"x")],
)
def test_a_next_key_without_the_feature_or_the_feature_without_it_is_refused(
    features: int, extension: bytes
) -> None:
    hello = ServerHello(
        9, features=features, next_key=extension[:32], next_key_proof=extension[32:]
    )
    with pytest.raises(
        ValueError, match=r"^the next key and its proof go with FEATURE_NEXT_KEY only$"
    ):
        hello.encode()
    fields = struct.pack("<BBBBHHIQ", 4, 1, 2, 0, 4, 0, features, 9)
    with pytest.raises(
        HandshakeError, match=r"^the server hello's size does not match its features$"
    ):
        ServerHello.decode(fields + extension)


def test_a_short_server_hello_is_refused() -> None:
    data = ServerHello(9).encode()
    with pytest.raises(HandshakeError, match=r"^server hello is not 20 bytes$"):
        ServerHello.decode(data[:19])


def test_a_server_hello_for_another_version_is_refused() -> None:
    data = struct.pack("<BBBBHHIQ", 3, 1, 2, 0, 4, 0, 0, 9)
    with pytest.raises(HandshakeError, match=r"^server selected version 3, not 4$"):
        ServerHello.decode(data)


@pytest.mark.parametrize(
    "fields",
    [(4, 2, 2, 0, 4, 0), (4, 0x81, 2, 0, 4, 0), (4, 1, 2, 1, 4, 0), (4, 1, 2, 0, 4, 1)],
)
def test_a_server_hello_with_reserved_bits_is_refused(fields: tuple[int, ...]) -> None:
    data = struct.pack("<BBBBHHIQ", *fields, 0, 9)
    with pytest.raises(HandshakeError, match=r"^server hello has reserved bits set$"):
        ServerHello.decode(data)


def test_the_client_accepts_what_it_offered() -> None:
    offer = Offer(frozenset({2}), FEATURE_STREAM)
    ServerHello(9, features=FEATURE_STREAM).check_against(offer)
    ServerHello(9, features=0).check_against(offer)


def test_the_client_refuses_a_feature_or_revision_it_did_not_offer() -> None:
    offer = Offer(frozenset({2}), FEATURE_STREAM)
    with pytest.raises(
        HandshakeError, match=r"^the server selected a revision or feature not offered$"
    ):
        ServerHello(9, features=FEATURE_NEXT_KEY).check_against(offer)
    with pytest.raises(
        HandshakeError, match=r"^the server selected a revision or feature not offered$"
    ):
        ServerHello(9, revision=3).check_against(offer)


def test_no_common_revision_names_both_sides() -> None:
    offer = Offer(frozenset({2, 1}), 0)
    with pytest.raises(NoCommonRevision) as raised:
        ServerHello(9, revision=0, revisions=frozenset({5, 3})).check_against(offer)
    assert str(raised.value) == (
        "the server speaks version-4 revision(s) 3, 5, this client 1, 2: upgrade the older side"
    )
    with pytest.raises(NoCommonRevision, match=r"revision\(s\) none, this client 1, 2:"):
        ServerHello(9, revision=0, revisions=frozenset()).check_against(offer)


def test_an_intent_encodes_code_name_and_token() -> None:
    intent = Intent(RequestCode.RECONNECT, "alice", b"\x01\x02")
    data = intent.encode()
    assert data == struct.pack("<HB", 827, 5) + b"alice" + b"\x02\x01\x02"
    assert Intent.decode(data) == intent
    assert Intent.decode(Intent(RequestCode.REGISTER, "b").encode()) == Intent(
        RequestCode.REGISTER, "b", b""
    )
    decoded = Intent.decode(bytearray(data))  # type: ignore[arg-type]  # a view, as noise gives
    assert type(decoded.token) is bytes
    assert type(decoded.code) is RequestCode


def test_an_intent_too_long_to_be_read_is_still_encoded_unsigned() -> None:
    """The server refuses it by its name; the length byte is not a signed one."""
    data = Intent(RequestCode.REGISTER, "n" * 200).encode()
    assert data[2] == 200 and len(data) == 3 + 200 + 1


def test_the_longest_intent_is_read() -> None:
    intent = Intent(RequestCode.REGISTER, "n" * 100, b"t" * 64)
    assert len(intent.encode()) == hs.MAX_INTENT_MESSAGE - 48 - 16
    assert Intent.decode(intent.encode()) == intent


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x39\x03\x00\x00", "intent too short"),
        (struct.pack("<HB", 825, 200) + b"a\x00", "malformed"),  # the length byte unsigned
        (struct.pack("<HB", 828, 1) + b"a\x00", "malformed"),
        (struct.pack("<HB", 826, 1) + b"a\x00", "malformed"),
        (struct.pack("<HB", 825, 3) + b"ab", "malformed"),
        (struct.pack("<HB", 825, 2) + b"ab", "malformed"),
        (struct.pack("<HB", 825, 1) + b"a\x02x", "malformed"),
        (struct.pack("<HB", 825, 1) + b"a\x00x", "malformed"),
        (struct.pack("<HB", 825, 1) + b"a\x41" + b"t" * 65, "malformed"),
    ],
)
def test_a_malformed_intent_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(HandshakeError) as refused:
        Intent.decode(data)
    assert str(refused.value) == ("intent too short" if "short" in message else "malformed intent")


def test_the_shortest_intent_is_read() -> None:
    data = struct.pack("<HB", 825, 1) + b"a\x00"
    assert len(data) == 5
    assert Intent.decode(data) == Intent(RequestCode.REGISTER, "a")


@pytest.mark.parametrize("name", ["a", "A0 ._-z", "9" * 100])
def test_names_that_match_are_kept(name: str) -> None:
    assert hs.check_name(name.encode()) == name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "must match"),
        (b" a", "must match"),
        (b".a", "must match"),
        (b"a/b", "must match"),
        (b"a" * 101, "must match"),
        (b"a\n", "must match"),
        ("é".encode(), "not ASCII"),
    ],
)
def test_names_that_do_not_match_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(HandshakeError) as refused:
        hs.check_name(raw)
    expected = {
        "must match": "name must match [A-Za-z0-9][A-Za-z0-9 ._-]{0,99}",
        "not ASCII": "name is not ASCII",
    }
    assert str(refused.value) == expected[message]
