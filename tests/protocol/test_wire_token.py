"""Version 3's 825 with an invitation token, byte by byte (eft_protocol.wire): the
token after the name's NUL as ``eft-token:`` token NUL, the slot still 255 bytes, its
limits to the byte, and what a server reads back from whatever a sender left there."""

from __future__ import annotations

import re

import pytest

from eft_protocol.wire import MAX_TOKEN, TOKEN_MARK, RegisterRequest

ZERO = bytes(16)
DOES_NOT_FIT = "^" + re.escape("the token does not fit in the name's 255-byte slot") + "$"
NOT_PRINTABLE = "^a token is printable ASCII$"


def _slot(name: str, token: bytes) -> bytes:
    frame = RegisterRequest(ZERO, name, token).encode()
    assert len(frame) == 23 + 255
    return frame[23:]


def test_the_token_follows_the_name_and_its_nul() -> None:
    slot = _slot("bob", b"t0k")
    assert slot == b"bob\0eft-token:t0k\0" + bytes(255 - 18)


def test_the_longest_token_fits_and_one_byte_more_does_not() -> None:
    token = b"k" * MAX_TOKEN
    assert _slot("a", token) == b"a\0" + TOKEN_MARK + token + b"\0" + bytes(255 - 77)
    with pytest.raises(ValueError, match=DOES_NOT_FIT):
        RegisterRequest(ZERO, "a", token + b"k").encode()


def test_a_token_that_ends_exactly_at_the_slot_fits_and_one_byte_later_does_not() -> None:
    token = b"k" * MAX_TOKEN  # the mark, the token and its NUL: 75 bytes
    name = "n" * (255 - 75 - 1)
    slot = _slot(name, token)
    assert slot == name.encode() + b"\0" + TOKEN_MARK + token + b"\0"
    with pytest.raises(ValueError, match=DOES_NOT_FIT):
        RegisterRequest(ZERO, name + "n", token).encode()


@pytest.mark.parametrize("token", [b"a\tb", b"\x7f", "é".encode(), b"new\nline"])
def test_a_token_that_is_not_printable_ascii_is_refused(token: bytes) -> None:
    with pytest.raises(ValueError, match=NOT_PRINTABLE):
        RegisterRequest(ZERO, "alice", token).encode()


def test_printable_ascii_with_spaces_and_signs_is_a_token() -> None:
    token = b"a b~!"
    assert _slot("x", token) == b"x\0eft-token:a b~!\0" + bytes(255 - 18)


def test_a_token_is_read_back_from_the_slot() -> None:
    for name, token in (("bob", b"t0k"), ("a", b"k" * MAX_TOKEN), ("n" * 179, b"k" * 64)):
        read = RegisterRequest.decode_payload(ZERO, _slot(name, token))
        assert read == RegisterRequest(ZERO, name, token)


def test_what_is_not_a_marked_terminated_token_reads_as_none() -> None:
    def read(after_name: bytes) -> bytes:
        slot = b"bob\0" + after_name
        slot += bytes(255 - len(slot))
        return RegisterRequest.decode_payload(ZERO, slot).token

    assert read(b"") == b""
    assert read(b"eft-token:\0") == b"", "an empty token"
    assert read(b"x" + TOKEN_MARK + b"t0k\0") == b"", "the mark must come first"
    assert read(b"EFT-TOKEN:t0k\0") == b"", "the mark is case-sensitive"
    assert read(b"eft-token:t0k\0more\0") == b"t0k", "up to its own NUL"


def test_a_token_without_its_nul_is_none() -> None:
    slot = b"bob\0" + TOKEN_MARK + b"t" * (255 - 4 - len(TOKEN_MARK))
    assert len(slot) == 255
    assert RegisterRequest.decode_payload(ZERO, slot).token == b""


def test_a_foreign_sender_s_long_token_is_cut_one_byte_past_the_limit() -> None:
    """So that a token too long is still seen as too long, not read as a valid one."""
    slot = b"bob\0" + TOKEN_MARK + b"t" * 100 + b"\0"
    slot += bytes(255 - len(slot))
    assert RegisterRequest.decode_payload(ZERO, slot).token == b"t" * (MAX_TOKEN + 1)
