"""Version 4 against an implementation that is not ours: the ``noiseprotocol`` package.

Its ``Noise_XX_25519_AESGCM_SHA256`` runs our handshake (either role) and our record
layer: records are its cipher states' ``EncryptWithAd(header, plaintext)``, and a rekey
is its ``rekey()`` after every ``rekey_interval`` records of a direction. Checked on the
frozen vectors, then live against both of our sessions with a rekey every 2 records.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.handshake import (
    FEATURE_NEXT_KEY,
    NOISE_PROTOCOL_NAME,
    HandshakeError,
    Intent,
    Offer,
    ServerHello,
    client_id_for,
    fingerprint,
    hello_header,
    intent_header,
    prologue,
    server_hello_header,
)

noise_connection = pytest.importorskip("noise.connection")  # the dev extra installs it
NoiseConnection, Keypair = noise_connection.NoiseConnection, noise_connection.Keypair

VECTORS = json.loads((Path(__file__).parent / "eft_v4_vectors.json").read_text())
FRAMES = VECTORS["frames"]
KEYS = {name: bytes.fromhex(value) for name, value in VECTORS["keys"].items()}
INTERVAL = 2


def _library(initiator: bool, *, pinned: bool, first_header: bytes) -> Any:
    side = "client" if initiator else "server"
    conn = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    conn.set_as_initiator() if initiator else conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, KEYS[f"{side}_static_priv"])
    if pinned:
        conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, KEYS[f"{side}_ephemeral_priv"])
    conn.set_prologue(prologue(first_header))
    conn.start_handshake()
    return conn


class LibraryRecords:
    """Our record layer on the library's cipher states, rekeying as we do."""

    def __init__(self, conn: Any, interval: int) -> None:
        self.send = conn.noise_protocol.cipher_state_encrypt
        self.recv = conn.noise_protocol.cipher_state_decrypt
        self.interval = interval

    def _count(self, state: Any) -> None:
        if state.n % self.interval == 0:
            state.rekey()

    def seal(self, header: bytes, plaintext: bytes) -> bytes:
        sealed = bytes(self.send.encrypt_with_ad(header, plaintext))
        self._count(self.send)
        return header + sealed

    def open(self, frame: bytes, header_size: int) -> bytes:
        plaintext = bytes(self.recv.decrypt_with_ad(frame[:header_size], frame[header_size:]))
        self._count(self.recv)
        return plaintext


@pytest.mark.filterwarnings("ignore:One of ephemeral keypairs")  # pinned, for the vectors
@pytest.mark.parametrize("library_is", ["client", "server"])
def test_the_vectors_with_the_library_in_either_role(library_is: str) -> None:
    frames = [bytes.fromhex(frame["hex"]) for frame in FRAMES]
    conn = _library(library_is == "client", pinned=True, first_header=frames[0][:23])
    payloads = [bytes.fromhex(FRAMES[i]["noise_payload"]) for i in range(3)]
    bodies = [frames[0][23:], frames[1][7:], frames[2][23:]]
    for index in range(3):
        if (index != 1) == (library_is == "client"):  # the library writes this one
            assert bytes(conn.write_message(payloads[index])) == bodies[index]
        else:
            assert bytes(conn.read_message(bodies[index])) == payloads[index]
    assert conn.handshake_finished
    assert conn.get_handshake_hash().hex() == VECTORS["handshake_hash"]
    records = LibraryRecords(conn, rec.REKEY_INTERVAL)
    for frame, vector in zip(frames[3:], FRAMES[3:], strict=True):
        header_size = 23 if vector["dir"] == "C->S" else 7
        plaintext = bytes.fromhex(vector["plaintext"])
        if (vector["dir"] == "C->S") == (library_is == "client"):
            assert records.seal(frame[:header_size], plaintext) == frame
        else:
            assert records.open(frame, header_size) == plaintext


@pytest.mark.filterwarnings("ignore:One of ephemeral keypairs")
def test_the_next_key_vector_with_the_library_and_openssl() -> None:
    """FEATURE_NEXT_KEY's message 2, read by the library; the proof recomputed with
    OpenSSL's X25519 and the standard library's HMAC (none of our code)."""
    vector = VECTORS["next_key"]
    first, second = bytes.fromhex(vector["frame_1_hex"]), bytes.fromhex(vector["frame_2_hex"])
    assert second[:7] == bytes.fromhex("044206b4000000")  # 1602, 180 bytes
    conn = _library(True, pinned=True, first_header=first[:23])
    conn.write_message(first[55:])
    hello = bytes(conn.read_message(second[7:]))
    assert hello.hex() == vector["server_hello"]
    next_public, proof = hello[20:52], hello[52:]
    assert next_public.hex() == vector["next_static_pub"]
    client_e = X25519PrivateKey.from_private_bytes(KEYS["client_ephemeral_priv"])
    shared = client_e.exchange(X25519PublicKey.from_public_bytes(next_public))
    server_static = bytes.fromhex(VECTORS["server_static_pub"])
    label = b"eft/4 next-key"
    assert hmac.digest(shared, label + server_static + next_public, "sha256") == proof


def test_the_rekeyed_keys_are_noise_rekey() -> None:
    for name in ("k1", "k2"):
        conn = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        cipher = conn.noise_protocol.cipher_class()
        keys = VECTORS["rekey"][name]
        assert keys[0] == VECTORS[name]
        key = bytes.fromhex(keys[0])
        for expected in keys[1:]:
            cipher.initialize(key)
            key = cipher.rekey(key)
            assert key.hex() == expected


def test_our_client_against_the_library_as_server() -> None:
    client = ClientSessionV4(
        KeyPair.from_private(KEYS["client_static_priv"]),
        "alice",
        register=True,
        check_server=lambda _print: None,
        rekey_interval=INTERVAL,
    )
    first = client.start()
    conn = _library(False, pinned=False, first_header=first[:23])
    offer = Offer.decode(bytes(conn.read_message(first[23:])))
    assert 2 in offer.revisions
    hello = ServerHello(1 << 30, revision=2).encode()
    second = server_hello_header() + bytes(conn.write_message(hello))
    third = client.receive(second[:7], second[7:]).send[0]
    assert client.revision == 2
    intent = Intent.decode(bytes(conn.read_message(third[23:])))
    assert (intent.code, intent.name) == (RequestCode.REGISTER, "alice")
    client_id = client_id_for(KeyPair.from_private(KEYS["client_static_priv"]).public)
    records = LibraryRecords(conn, INTERVAL)
    welcome = records.seal(RESPONSE_HEADER.pack(4, ResponseCode.REGISTERED, 32), client_id)
    assert client.receive(welcome[:7], welcome[7:]).registered == client_id
    _records_both_ways(records, client_id, ours=client, we_are_the_client=True)


def _records_both_ways(
    records: LibraryRecords, client_id: bytes, *, ours: Any, we_are_the_client: bool
) -> None:
    """Records of our session's own cipher states (the record layer alone, whatever the
    messages carry) against the library's, across several rekeys in each direction.
    ``ours`` is the session: its ``_send`` and ``_recv`` are the record layer."""

    def request(size: int) -> bytes:
        return REQUEST_HEADER.pack(client_id, 4, RequestCode.SEND_FILE, size + 16)

    def response(size: int) -> bytes:
        return RESPONSE_HEADER.pack(4, ResponseCode.ACKNOWLEDGED, size + 16)

    ours_header, theirs_header = (request, response) if we_are_the_client else (response, request)
    for index in range(3 * INTERVAL + 1):
        plaintext = bytes([index]) * (index * 7)
        header = ours_header(len(plaintext))
        sealed = header + ours._send.seal(header, plaintext)
        assert records.open(sealed, len(header)) == plaintext
        header = theirs_header(len(plaintext))
        theirs = records.seal(header, plaintext)
        assert ours._recv.open(header, theirs[len(header) :]) == plaintext
    rounds, welcome = 3 * INTERVAL + 1, 1  # and the 1600 before them, server to client
    counters = (ours._send.counter, ours._recv.counter)
    assert counters == (
        (rounds, rounds + welcome) if we_are_the_client else (rounds + welcome, rounds)
    )


@pytest.mark.parametrize("forged", [False, True])
def test_our_client_checks_the_next_key_proof(forged: bool) -> None:
    client = ClientSessionV4(
        KeyPair.from_private(KEYS["client_static_priv"]),
        "alice",
        register=True,
        check_server=lambda _print: None,
    )
    first = client.start()
    conn = _library(False, pinned=False, first_header=first[:23])
    offer = Offer.decode(bytes(conn.read_message(first[23:])))
    assert offer.features & FEATURE_NEXT_KEY
    next_key = KeyPair.from_private(bytes(range(32, 64)))
    offer_key = first[23:55]
    shared = X25519PrivateKey.from_private_bytes(next_key.private).exchange(
        X25519PublicKey.from_public_bytes(offer_key)
    )
    server_public = KeyPair.from_private(KEYS["server_static_priv"]).public
    proof = hmac.digest(shared, b"eft/4 next-key" + server_public + next_key.public, "sha256")
    if forged:
        proof = bytes(32)
    hello = ServerHello(
        1 << 30, features=FEATURE_NEXT_KEY, next_key=next_key.public, next_key_proof=proof
    ).encode()
    second = server_hello_header(FEATURE_NEXT_KEY) + bytes(conn.write_message(hello))
    assert client.payload_size(second[:7]) == len(second) - 7
    if forged:
        with pytest.raises(HandshakeError, match="next key is not proven"):
            client.receive(second[:7], second[7:])
    else:
        client.receive(second[:7], second[7:])
        assert client.next_server_fingerprint == fingerprint(next_key.public)


def test_our_server_against_the_library_as_client() -> None:
    server = v4s.ServerSessionV4(
        KeyPair.from_private(KEYS["server_static_priv"]),
        MemoryRegistry(),
        max_file_size=1 << 30,
        rekey_interval=INTERVAL,
    )
    offer = Offer().encode()
    header = hello_header(32 + len(offer))
    conn = _library(True, pinned=False, first_header=header)
    message_1 = header + bytes(conn.write_message(offer))
    assert server.payload_size(message_1[:23]) == len(message_1) - 23
    (second,) = [
        e.frame
        for e in server.receive(message_1[:23], message_1[23:], 0.0)
        if isinstance(e, v4s.SendFrame)
    ]
    assert second[:7] == server_hello_header()
    hello = ServerHello.decode(bytes(conn.read_message(second[7:])))
    assert (hello.revision, server.revision) == (2, 2)
    intent = Intent(RequestCode.REGISTER, "bob").encode()
    third = intent_header(RequestCode.REGISTER, 48 + len(intent) + 16)
    third += bytes(conn.write_message(intent))
    effects = server.receive(third[:23], third[23:], 0.0)
    (welcome,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    records = LibraryRecords(conn, INTERVAL)
    assert records.open(welcome, 7) == server.client_id
    assert server.client_id is not None
    _records_both_ways(records, server.client_id, ours=server, we_are_the_client=False)
