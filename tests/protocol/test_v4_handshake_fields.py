"""Version 4's handshake fields (protocol/eft_protocol/v4/handshake.py) on their own
(the messages as bytes are pinned by tests/v4/test_v4_vectors.py): the offer and the
server hello both ways, what is ignored and what is refused, the revision choice, the
intent and its name rule, the headers, ids and fingerprints."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.v4 import handshake as hs


def test_an_offer_round_trips_and_ignores_what_it_does_not_know() -> None:
    offer = hs.Offer(frozenset({2, 5}), hs.SUPPORTED_FEATURES | 0x80, cookie=b"c" * 16)
    assert hs.Offer.decode(offer.encode()) == offer
    assert offer.select() == (2, hs.SUPPORTED_FEATURES), "the highest in common, known bits"
    assert hs.Offer(frozenset({1, 3})).select()[0] == 0, "nothing in common"
    padded = hs.Offer().encode() + bytes(20)  # a later client's longer offer
    assert hs.Offer.decode(padded).cookie == b"", "an all-zero cookie is no cookie"
    for size in (hs.OFFER_SIZE - 1, hs.MAX_OFFER_SIZE + 1):
        with pytest.raises(hs.HandshakeError):
            hs.Offer.decode(bytes(size))


def test_a_server_hello_round_trips_with_and_without_the_next_key() -> None:
    plain = hs.ServerHello(1 << 40, open_registration=False)
    assert hs.ServerHello.decode(plain.encode()) == plain
    rotating = hs.ServerHello(
        5, features=hs.FEATURE_NEXT_KEY, next_key=b"k" * 32, next_key_proof=b"p" * 32
    )
    assert hs.ServerHello.decode(rotating.encode()) == rotating
    with pytest.raises(ValueError):
        hs.ServerHello(5, next_key=b"k" * 32, next_key_proof=b"p" * 32).encode()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda b: b[:-1], "not 20 bytes"),
        (lambda b: b + bytes(64), "does not match its features"),
        (lambda b: bytes([3]) + b[1:], "version 3"),
        (lambda b: b[:1] + bytes([0x80]) + b[2:], "reserved bits"),
        (lambda b: b[:3] + bytes([1]) + b[4:], "reserved bits"),
    ],
)
def test_a_damaged_server_hello_is_refused(change: Callable[[bytes], bytes], why: str) -> None:
    encoded = hs.ServerHello(5).encode()
    with pytest.raises(hs.HandshakeError, match=why):
        hs.ServerHello.decode(change(encoded))


def test_the_client_checks_the_servers_choice_against_its_offer() -> None:
    offer = hs.Offer(frozenset({2}), hs.FEATURE_STREAM)
    hs.ServerHello(5, features=hs.FEATURE_STREAM).check_against(offer)
    with pytest.raises(hs.NoCommonRevision, match=r"revision\(s\) 7, this client 2"):
        hs.ServerHello(5, revision=0, revisions=frozenset({7})).check_against(offer)
    with pytest.raises(hs.HandshakeError, match="not offered"):
        hs.ServerHello(5, features=hs.FEATURE_NEXT_KEY, next_key=b"k" * 32,
                       next_key_proof=b"p" * 32).check_against(offer)  # fmt: skip
    with pytest.raises(hs.HandshakeError, match="not offered"):
        hs.ServerHello(5, revision=3).check_against(offer)


def test_an_intent_round_trips_and_its_name_is_checked() -> None:
    intent = hs.Intent(RequestCode.RECONNECT, "alice.b-1", token=b"t" * 64)
    assert hs.Intent.decode(intent.encode()) == intent
    bad = [
        hs.Intent(RequestCode.SEND_FILE, "alice").encode(),  # not 825 or 827
        hs.Intent(RequestCode.REGISTER, "alice").encode() + b"x",  # a byte too many
        hs.Intent(RequestCode.REGISTER, "alice", token=b"t" * 65).encode(),
        hs.Intent(RequestCode.REGISTER, "-alice").encode(),
        hs.Intent(RequestCode.REGISTER, "a" * 101).encode(),
        b"\x61\x03",
    ]
    for data in bad:
        with pytest.raises(hs.HandshakeError):
            hs.Intent.decode(data)
    with pytest.raises(hs.HandshakeError, match="not ASCII"):
        hs.check_name("caf\u00e9".encode())


def test_headers_ids_and_fingerprints() -> None:
    header = hs.hello_header()
    assert REQUEST_HEADER.unpack(header) == (bytes(16), 4, RequestCode.SEND_PUBLIC_KEY, 38)
    assert hs.is_hello_header(header) and hs.is_hello_header(hs.hello_header(96))
    assert not hs.is_hello_header(hs.hello_header(97)), "beyond the largest offer"
    assert not hs.is_hello_header(hs.revision_1_hello_header())
    assert hs.server_hello_header()[3:] == (116).to_bytes(4, "little")
    assert hs.server_hello_header(hs.FEATURE_NEXT_KEY)[3:] == (180).to_bytes(4, "little")
    assert hs.prologue(header) == b"eft/4" + header
    key = bytes(range(32))
    assert len(hs.client_id_for(key)) == 16 and hs.client_id_for(key) != hs.client_id_for(bytes(32))
    print_ = hs.fingerprint(key)
    assert print_.startswith("SHA256:") and len(print_) == 7 + 43 and "=" not in print_
    assert hs.revisions_in(hs.revision_bits({0, 2, 15})) == {0, 2, 15}
