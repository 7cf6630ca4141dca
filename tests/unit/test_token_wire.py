"""The invitation token in version 3's 825: after the name's NUL, inside the 255-byte
slot, where an original server reads nothing (docs/PROTOCOL-v3.md)."""

from __future__ import annotations

import pytest

from eft_protocol.wire import RegisterRequest, decode_string

ZERO = bytes(16)


def test_the_token_rides_after_the_name_and_the_slot_stays_255_bytes() -> None:
    frame = RegisterRequest(ZERO, "alice", b"eft_abc").encode()
    header, payload = frame[:23], frame[23:]
    assert header == ZERO + bytes.fromhex("03 3903 ff000000")
    assert len(payload) == 255
    assert payload[:6] == b"alice\0"
    assert payload[6:24] == b"eft-token:eft_abc\0" and payload[24:] == bytes(231)
    assert decode_string(payload) == "alice"  # all an original server reads
    assert RegisterRequest.decode_payload(ZERO, payload).token == b"eft_abc"


def test_no_token_is_the_original_frame_and_junk_is_no_token() -> None:
    plain = RegisterRequest(ZERO, "alice").encode()
    assert plain[23:] == b"alice" + bytes(250)
    junk = b"alice\0" + b"\x7f\x45\x4c\x46garbage" + bytes(238)
    assert RegisterRequest.decode_payload(ZERO, junk) == RegisterRequest(ZERO, "alice")


def test_a_token_that_does_not_fit_is_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match="fit"):
        RegisterRequest(ZERO, "alice", b"x" * 65).encode()
    with pytest.raises(ValueError, match="fit"):
        RegisterRequest(ZERO, "a" * 200, b"x" * 60).encode()
