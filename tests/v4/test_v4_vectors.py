"""Version 4's test vectors (docs/PROTOCOL-v4.md), and the same frames damaged.

eft_v4_vectors.json is written by tests/v4/make_vectors.py (revision 2); a standard
Noise library checks its handshake and records in test_noise_interop.py. The first
release's handshake (revision 1, the design notes' frames, produced by an independent
Crypto++ program) stays below as the bytes an older peer sends: refused, clearly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eft_protocol import errors
from eft_protocol.noise import KeyPair
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.file_digest import file_digest

from . import make_vectors

VECTORS = json.loads((Path(__file__).parent / "eft_v4_vectors.json").read_text())
KEYS = {name: KeyPair.from_private(bytes.fromhex(h)) for name, h in VECTORS["keys"].items()}
FRAMES = [(f["dir"], f["label"], bytes.fromhex(f["hex"])) for f in VECTORS["frames"]]
DATA = bytes.fromhex(VECTORS["file"]["content_hex"])
DIGEST = bytes.fromhex(VECTORS["file"]["blake3"])

# Revision 1 (published with the design notes; reproduced there by a separate Crypto++
# program): what a client or server of the first release sends.
REVISION_1_HANDSHAKE = [
    "00000000000000000000000000000000043a0320000000ca35def5ae56cec33dc2036731ab14896bc4c7"
    "5dbb07a61f879f8e3afa4c7944",
    "0442066c00000095ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad"
    "1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9fad35548dd14f3a03841ed6c0c"
    "cb8dda1c5c8aea4e8729acf428294db1cee53bda01d87c799bd9d23c4ae221",
    "0000000000000000000000000000000004390349000000c7195ffacac1307ff99046f219750fc47693e2"
    "3c3cb08b89c2af808b444850a886f74835442928ba0378924dcc9448d527e4db8096a5a9a6ffa142bf74"
    "2eb644be6f85df9cff0f1052",
]


class Scenario:
    """Both sessions with the vectors' keys; ``run`` replays frames up to a point."""

    def __init__(self, server_static: KeyPair | None = None, pin: str | None = None) -> None:
        self.server = v4s.ServerSessionV4(
            server_static or KEYS["server_static_priv"],
            MemoryRegistry(),
            max_file_size=1 << 30,
            ephemeral=KEYS["server_ephemeral_priv"],
        )
        expected = pin

        def check(fingerprint: str) -> None:
            if expected is not None and fingerprint != expected:
                raise PermissionError(f"pinned {expected}, got {fingerprint}")

        self.client = ClientSessionV4(
            KEYS["client_static_priv"],
            "alice",
            register=True,
            check_server=check,
            ephemeral=KEYS["client_ephemeral_priv"],
        )
        self.sent: list[bytes] = []

    def to_server(self, frame: bytes) -> list[Any]:
        size = self.server.payload_size(frame[:23])
        assert size == len(frame) - 23
        effects = self.server.receive(frame[:23], frame[23:], now=0.0)
        for effect in effects:
            if isinstance(effect, v4s.OpenUpload):
                effects += self.server.upload_ready(0)
            if isinstance(effect, v4s.FinishUpload):
                effects += self.server.upload_complete(DIGEST, now=0.0)
        self.sent = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
        return effects

    def to_client(self, frame: bytes) -> Any:
        size = self.client.payload_size(frame[:7])
        assert size == len(frame) - 7
        return self.client.receive(frame[:7], frame[7:])

    def client_frame(self, label: str, reply: Any) -> bytes:
        """What the client sends next in the scenario."""
        if label == "826 hello":
            return self.client.start()
        if label == "828 file metadata":
            return self.client.begin_file("hello.txt", len(DATA), bytes(16))
        if label == "828 chunk 1 (final)":
            frame = self.client.chunk_record(1, DATA)
            self.client.file_hashed(DIGEST)
            return frame
        assert reply is not None and reply.send
        return bytes(reply.send[0])


def _replay(until: int) -> tuple[Scenario, Any]:
    scenario, reply = Scenario(), None
    for index, (direction, label, expected) in enumerate(FRAMES[:until]):
        if direction == "C->S":
            frame = scenario.client_frame(label, reply)
            assert frame == expected, f"frame {index} ({label}) differs"
            scenario.to_server(frame)
        else:
            assert scenario.sent == [expected], f"frame {index} ({label}) differs"
            reply = scenario.to_client(expected)
    return scenario, reply


def test_every_frame_of_the_scenario() -> None:
    scenario, reply = _replay(len(FRAMES))
    assert reply.file_verified
    assert scenario.server.state is v4s.ServerStateV4.IDLE


# BLAKE3's published vectors: input byte i is i % 251. 1024 bytes is one chunk of the
# BLAKE3 tree; 1025 the first input with two.
BLAKE3_VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
}


@pytest.mark.parametrize("length", sorted(BLAKE3_VECTORS))
def test_the_file_digest_is_blake3(length: int) -> None:
    data = bytes(i % 251 for i in range(length))
    assert file_digest(data).hexdigest() == BLAKE3_VECTORS[length]
    fed = file_digest()
    for start in range(0, length, 100):  # fed in pieces, as a file is
        fed.update(memoryview(data)[start : start + 100])
    assert fed.digest().hex() == BLAKE3_VECTORS[length]


def test_the_scenario_file_digest_is_its_blake3() -> None:
    assert file_digest(DATA).digest() == DIGEST


def test_the_json_is_what_the_generator_makes() -> None:
    assert make_vectors.render(make_vectors.build()) == make_vectors.PATH.read_text()


def test_identities_did_not_change_with_the_revision() -> None:
    """Keys, client ids and fingerprints are revision-free: pins and me4.info still hold."""
    assert VECTORS["client_id"] == "2053f09d3a234d1eefcb4a8ff4daef4b"
    assert VECTORS["server_fingerprint"] == "SHA256:nFZD8f0aHK0HZ7vEJXWyCA/5AnyYkVYZi5jseKuVYDg"
    assert VECTORS["protocol_name"] == "Noise_XX_25519_AESGCM_SHA256"


def test_a_revision_1_client_is_refused_in_words_it_reads() -> None:
    """An older client's own frames (the design notes' vectors): the server answers its
    hello byte for byte as revision 1 did, then its message 3 with a 1607 that says why,
    and closes, having looked up and stored nothing."""
    first, second, third = (bytes.fromhex(frame) for frame in REVISION_1_HANDSHAKE)
    scenario = Scenario()
    scenario.to_server(first)
    assert scenario.sent == [second]
    effects = scenario.to_server(third)
    assert scenario.server.client_id is None and scenario.server.revision == 1
    assert any(isinstance(e, v4s.Close) for e in effects)
    (refusal,) = scenario.sent
    assert refusal[:3] == bytes.fromhex("044706")  # 1607
    revision_1_k2 = "cbabb3f5e4529fc0e93efda9b4b70169270c04b05c5be25f71e9c55f7955c86a"
    plaintext = rec.RecordCipher(bytes.fromhex(revision_1_k2)).open(refusal[:7], refusal[7:])
    assert rec.decode_error(plaintext) == (rec.ErrorCode.BAD_REQUEST, v4s.REVISION_1_REFUSAL)


def test_a_revision_1_server_hello_fails_at_the_client() -> None:
    """An older server's message 2 (were it to answer): the size differs, and so does the
    suite; the client stops before message 3, so it reveals nothing."""
    scenario = Scenario()
    scenario.client.start()
    second = bytes.fromhex(REVISION_1_HANDSHAKE[1])
    with pytest.raises(errors.ResponseError):
        scenario.client.payload_size(second[:7])


def test_an_offer_with_no_common_revision_gets_an_authenticated_refusal() -> None:
    from eft_protocol.v4.handshake import NoCommonRevision, Offer  # noqa: PLC0415

    scenario = Scenario()
    scenario.client.offer = Offer(revisions=frozenset({3}), features=0x8000_0001)
    effects = scenario.to_server(scenario.client.start())
    assert any(isinstance(e, v4s.Close) for e in effects)
    assert scenario.server.revision == 0
    with pytest.raises(NoCommonRevision, match=r"revision\(s\) 2, this client 3"):
        scenario.to_client(scenario.sent[0])


def test_unknown_offer_bits_are_ignored() -> None:
    from eft_protocol.v4.handshake import (  # noqa: PLC0415
        FEATURE_PACK,
        FEATURE_STREAM,
        FEATURE_WIDE_WINDOW,
        Offer,
    )

    scenario = Scenario()
    scenario.client.offer = Offer(revisions=frozenset({2, 3, 9}), features=0xFFFF_FFFF)
    scenario.to_server(scenario.client.start())
    # Only what the server knows and uses (no next key configured: no NEXT_KEY).
    selected = FEATURE_STREAM | FEATURE_WIDE_WINDOW | FEATURE_PACK
    assert (scenario.server.revision, scenario.server.features) == (2, selected)
    scenario.to_client(scenario.sent[0])
    assert (scenario.client.revision, scenario.client.features) == (2, selected)


def _flips(frame: bytes) -> list[int]:
    """Bits to flip: every header bit, then a spread through the payload."""
    header = 23 if len(frame) > 7 and frame[16] == 4 else 7
    return list(range(header * 8)) + list(range(header * 8, len(frame) * 8, 13))


@pytest.mark.parametrize("index", range(len(FRAMES)), ids=[label for _, label, _ in FRAMES])
def test_one_flipped_bit_anywhere_is_rejected(index: int) -> None:
    direction, _label, frame = FRAMES[index]
    for bit in _flips(frame):
        scenario, _ = _replay(index)
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        if direction == "C->S":
            _assert_server_rejects(scenario, bytes(damaged))
        else:
            _assert_client_rejects(scenario, bytes(damaged))


def _assert_server_rejects(scenario: Scenario, frame: bytes) -> None:
    header, rest = frame[:23], frame[23:]
    try:
        size = scenario.server.payload_size(header)
    except errors.ProtocolError:
        return  # refused from its header alone
    if size > len(rest):
        return  # the server waits for bytes that never come, then times out: no answer
    effects = scenario.server.receive(header, rest[:size], now=0.0)
    assert not any(isinstance(e, v4s.CommitUpload | v4s.WriteChunk) for e in effects)
    answers = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    if header[17:19] == (826).to_bytes(2, "little") and answers:
        # Message 1 is not authenticated; a damaged ephemeral key breaks message 2.
        scenario.client.start()  # the client that sent the undamaged hello
        with pytest.raises(errors.ProtocolError):
            scenario.to_client(answers[0])
        return
    assert answers == [], "answered a damaged frame"
    assert any(isinstance(e, v4s.Close) for e in effects)


def _assert_client_rejects(scenario: Scenario, frame: bytes) -> None:
    header, rest = frame[:7], frame[7:]
    try:
        size = scenario.client.payload_size(header)
    except errors.ProtocolError:
        return
    if size > len(rest):
        return  # the client waits, then times out: nothing accepted
    with pytest.raises(errors.ProtocolError):
        scenario.client.receive(header, rest[:size])


def test_a_different_server_key_trips_the_pin() -> None:
    impostor = KeyPair.from_private(bytes(range(32)))
    scenario = Scenario(server_static=impostor, pin=VECTORS["server_fingerprint"])
    scenario.to_server(scenario.client.start())
    with pytest.raises(PermissionError, match="pinned"):
        scenario.to_client(scenario.sent[0])
    assert scenario.client.state.value == "awaiting_server_hello"  # message 3 never made
