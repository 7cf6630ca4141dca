"""``eft_protocol.noise`` piece by piece: key pairs, DH refusals, the nonces, the
cipher states' counters and the handshake's refusals, with their exact words (the
vectors and the library interop check the whole run)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from eft_protocol import noise
from eft_protocol.noise import CipherState, HandshakeState, KeyPair, NoiseError, dh

A, B = KeyPair.from_private(bytes([1]) * 32), KeyPair.from_private(bytes([2]) * 32)


def _raises(message: str) -> Any:
    """``pytest.raises`` for exactly these words."""
    return pytest.raises(NoiseError, match="^" + re.escape(message) + "$")


@pytest.mark.parametrize("size", [31, 33, 0])
def test_a_private_key_is_32_bytes(size: int) -> None:
    with _raises("a Curve25519 private key is 32 bytes"):
        KeyPair.from_private(bytes([1]) * size)


def test_a_key_pair_keeps_its_parsed_key() -> None:
    pair = KeyPair.from_private(bytes([1]) * 32)
    assert isinstance(pair.parsed, X25519PrivateKey)
    assert pair.parsed.private_bytes_raw() == bytes([1]) * 32
    assert pair.public == pair.parsed.public_key().public_bytes_raw()
    assert KeyPair.generate(lambda n: bytes([3]) * n).private == bytes([3]) * 32


def test_dh_is_symmetric_and_refuses_bad_keys() -> None:
    assert dh(A, B.public) == dh(B, A.public)
    with _raises("a Curve25519 public key is 32 bytes"):
        dh(A, bytes(31))
    with pytest.raises(NoiseError, match=r"low-order|bad Curve25519 public key"):
        dh(A, bytes(32))


def test_the_nonces() -> None:
    assert noise._aesgcm_nonce(1) == bytes(11) + b"\x01"
    assert noise._chachapoly_nonce(1) == bytes(4) + b"\x01" + bytes(7)


def test_a_cipher_state_counts_and_refuses_short_or_forged_input() -> None:
    sender, receiver = CipherState(), CipherState()
    assert sender.encrypt_with_ad(b"ad", b"clear") == b"clear"  # no key: passed through
    sender.initialize_key(bytes(32))
    receiver.initialize_key(bytes(32))
    sealed = sender.encrypt_with_ad(b"ad", b"hello")
    assert sender.n == 1 and len(sealed) == 5 + 16
    with _raises("ciphertext shorter than its tag"):
        receiver.decrypt_with_ad(b"ad", sealed[:15])
    with _raises("authentication failed"):
        receiver.decrypt_with_ad(b"other", sealed)
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"ad", sealed) == b"hello"
    assert receiver.n == 1
    receiver.n = noise.MAX_NONCE
    with _raises("nonce exhausted: this session must end"):
        receiver.decrypt_with_ad(b"ad", sealed)


def _pair() -> tuple[HandshakeState, HandshakeState]:
    initiator = HandshakeState(initiator=True, static=A, prologue=b"p")
    responder = HandshakeState(initiator=False, static=B, prologue=b"p")
    return initiator, responder


def test_a_message_2_cut_after_the_static_key_fails_on_its_payload() -> None:
    initiator, responder = _pair()
    responder.read_message(initiator.write_message(b""))
    second = responder.write_message(b"")
    assert len(second) == 32 + 48 + 16
    with _raises("ciphertext shorter than its tag"):
        initiator.read_message(second[: 32 + 48])


def test_a_message_2_cut_inside_the_static_key_is_too_short() -> None:
    initiator, responder = _pair()
    responder.read_message(initiator.write_message(b""))
    second = responder.write_message(b"")
    with _raises("handshake message too short for a static key"):
        initiator.read_message(second[: 32 + 47])
    initiator, _ = _pair()
    initiator.write_message(b"")
    with _raises("handshake message too short"):
        initiator.read_message(bytes(31))


def test_split_before_the_end_and_messages_out_of_turn_are_refused() -> None:
    initiator, responder = _pair()
    with _raises("the handshake is not complete"):
        initiator.split()
    with _raises("message out of turn"):
        responder.write_message(b"")
    with _raises("message out of turn"):
        initiator.read_message(bytes(32))


def test_a_whole_handshake_splits_into_matching_states() -> None:
    initiator, responder = _pair()
    responder.read_message(initiator.write_message(b"1"))
    assert initiator.read_message(responder.write_message(b"2")) == b"2"
    assert responder.read_message(initiator.write_message(b"3")) == b"3"
    assert initiator.complete and responder.complete
    assert (initiator.rs, responder.rs) == (B.public, A.public)
    assert initiator.handshake_hash == responder.handshake_hash
    send, _ = initiator.split()
    _, receive = responder.split()
    assert receive.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"x")) == b"x"
    with _raises("message out of turn"):
        initiator.write_message(b"")


def test_a_cipher_state_counts_every_record() -> None:
    sender, receiver = CipherState(), CipherState()
    sender.initialize_key(bytes(32))
    receiver.initialize_key(bytes(32))
    for count in (1, 2, 3):
        assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"r")) == b"r"
        assert sender.n == receiver.n == count


def test_a_key_removed_passes_data_through_again() -> None:
    state = CipherState("ChaChaPoly")
    state.initialize_key(bytes(32))
    assert len(state.encrypt_with_ad(b"", b"x")) == 17
    state.initialize_key(None)
    assert (state.has_key, state.n) == (False, 0)
    assert state.encrypt_with_ad(b"", b"x") == b"x"
    assert state.decrypt_with_ad(b"", b"x") == b"x"


def test_a_fresh_cipher_state_has_no_key() -> None:
    assert CipherState().has_key is False


def test_a_protocol_name_over_32_bytes_is_hashed() -> None:
    import hashlib  # noqa: PLC0415

    name = b"N" * 40
    assert noise.SymmetricState(name, "AESGCM").h == hashlib.sha256(name).digest()
    assert noise.SymmetricState(b"N" * 32, "AESGCM").h == b"N" * 32


def test_the_default_suite_is_aesgcm_in_the_hash() -> None:
    import hashlib  # noqa: PLC0415

    name = b"Noise_XX_25519_AESGCM_SHA256"
    state = HandshakeState(initiator=True, static=A, prologue=b"p")
    assert state.handshake_hash == hashlib.sha256(name + bytes(32 - len(name)) + b"p").digest()


def test_the_ephemeral_key_comes_from_the_random_function_given() -> None:
    state = HandshakeState(
        initiator=True, static=A, prologue=b"", randfunc=lambda n: bytes([7]) * n
    )
    state.write_message(b"")
    assert state.e is not None and state.e.private == bytes([7]) * 32


def test_a_handshake_message_is_at_most_65535_bytes() -> None:
    initiator, _ = _pair()
    assert len(initiator.write_message(bytes(65535 - 32))) == 65535
    initiator, _ = _pair()
    with _raises("handshake message over 65535 bytes"):
        initiator.write_message(bytes(65535 - 31))


def test_a_message_without_a_payload_carries_none() -> None:
    initiator, responder = _pair()
    first = initiator.write_message()
    assert len(first) == 32
    assert responder.read_message(first) == b""
