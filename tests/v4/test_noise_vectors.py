"""The Noise XX layer against the public cacophony vectors (ChaChaPoly and AESGCM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eft_protocol.noise import HandshakeState, KeyPair, NoiseError, dh

VECTORS = json.loads((Path(__file__).parent / "noise_xx_vectors.json").read_text())["vectors"]


def _pair(vector: dict, role: str) -> tuple[HandshakeState, str]:
    cipher = vector["protocol_name"].split("_")[3]
    state = HandshakeState(
        initiator=role == "init",
        static=KeyPair.from_private(bytes.fromhex(vector[f"{role}_static"])),
        ephemeral=KeyPair.from_private(bytes.fromhex(vector[f"{role}_ephemeral"])),
        prologue=bytes.fromhex(vector[f"{role}_prologue"]),
        cipher=cipher,
    )
    return state, cipher


@pytest.mark.parametrize("vector", VECTORS, ids=[v["protocol_name"] for v in VECTORS])
def test_cacophony_vector(vector: dict) -> None:
    initiator, _ = _pair(vector, "init")
    responder, _ = _pair(vector, "resp")
    messages = vector["messages"]
    for index, message in enumerate(messages[:3]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        sent = writer.write_message(bytes.fromhex(message["payload"]))
        assert sent.hex() == message["ciphertext"]
        assert reader.read_message(sent).hex() == message["payload"]
    assert initiator.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.handshake_hash.hex() == vector["handshake_hash"]
    i_send, i_recv = initiator.split()
    r_send, r_recv = responder.split()
    for index, message in enumerate(messages[3:]):  # turns keep alternating: responder first
        sender, receiver = (r_send, i_recv) if index % 2 == 0 else (i_send, r_recv)
        sent = sender.encrypt_with_ad(b"", bytes.fromhex(message["payload"]))
        assert sent.hex() == message["ciphertext"]
        assert receiver.decrypt_with_ad(b"", sent).hex() == message["payload"]


def test_a_flipped_bit_in_any_handshake_message_is_rejected() -> None:
    vector = next(v for v in VECTORS if "ChaChaPoly" in v["protocol_name"])
    for index in (1, 2):  # message 0 is unauthenticated; its damage shows at message 1
        for bit in range(0, 8 * 48, 37):
            initiator, _ = _pair(vector, "init")
            responder, _ = _pair(vector, "resp")
            first = initiator.write_message(b"")
            responder.read_message(first)
            second = responder.write_message(b"")
            if index == 1:
                damaged = bytearray(second)
                damaged[bit // 8] ^= 1 << (bit % 8)
                with pytest.raises(NoiseError):
                    initiator.read_message(bytes(damaged))
                continue
            initiator.read_message(second)
            third = bytearray(initiator.write_message(b""))
            third[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(NoiseError):
                responder.read_message(bytes(third))


@pytest.mark.parametrize(
    "public",
    [
        bytes(32),  # the identity: every DH with it is all zeros
        (1).to_bytes(32, "little"),  # order 1 too
        # a point of order 8
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
    ids=["zero", "one", "order-8"],
)
def test_a_low_order_peer_key_is_refused(public: bytes) -> None:
    # A peer that sends a small-order point would force a known shared secret.
    with pytest.raises(NoiseError):
        dh(KeyPair.generate(), public)


def test_a_short_peer_key_or_private_key_is_refused() -> None:
    with pytest.raises(NoiseError):
        dh(KeyPair.generate(), bytes(31))
    with pytest.raises(NoiseError):
        KeyPair.from_private(bytes(31))


def test_the_parsed_key_and_the_bytes_agree() -> None:
    # dh() takes the parsed key when there is one, the bytes otherwise: same secret.
    ours, theirs = KeyPair.generate(), KeyPair.generate()
    bare = KeyPair(ours.private, ours.public)
    assert dh(ours, theirs.public) == dh(bare, theirs.public) == dh(theirs, ours.public)
