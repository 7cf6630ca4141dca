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

    def respond(code: int, plaintext: bytes) -> Any:
        frame = records.seal(RESPONSE_HEADER.pack(4, code, len(plaintext) + 16), plaintext)
        return client.receive(frame[:7], frame[7:])

    assert respond(ResponseCode.REGISTERED, client_id).registered == client_id
    content = b"across a rekey\n"
    meta = records.open(client.begin_file("x.txt", len(content), bytes(16)), 23)
    assert rec.decode_file_record(meta) == rec.FileMeta(1, len(content), bytes(16), "x.txt")
    assert respond(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1)).start_chunk == 1
    chunk = rec.decode_file_record(records.open(client.chunk_record(1, content), 23))
    assert isinstance(chunk, rec.FileChunk) and bytes(chunk.data) == content
    client.file_hashed(b"d" * 32)
    reply = respond(ResponseCode.FILE_RECEIVED, rec.encode_received(1, len(content), b"d" * 32))
    assert rec.decode_file_id(records.open(reply.send[0], 23)) == 1  # 900, under a new key
    assert respond(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(1)).file_verified


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
    frames: list[bytes] = []

    def send(frame: bytes) -> list[Any]:
        assert server.payload_size(frame[:23]) == len(frame) - 23
        effects = server.receive(frame[:23], frame[23:], now=0.0)
        for effect in list(effects):
            if isinstance(effect, v4s.OpenUpload):
                effects += server.upload_ready(0)
            if isinstance(effect, v4s.FinishUpload):
                effects += server.upload_complete(b"d" * 32, now=0.0)
        frames[:] = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
        return effects

    send(header + bytes(conn.write_message(offer)))
    assert frames[0][:7] == server_hello_header()
    hello = ServerHello.decode(bytes(conn.read_message(frames[0][7:])))
    assert (hello.revision, server.revision) == (2, 2)
    intent = Intent(RequestCode.REGISTER, "bob").encode()
    send(intent_header(RequestCode.REGISTER, 48 + len(intent) + 16) + conn.write_message(intent))
    records = LibraryRecords(conn, INTERVAL)
    client_id = records.open(frames[0], 7)
    assert client_id == server.client_id

    def record(code: int, plaintext: bytes) -> bytes:
        header = REQUEST_HEADER.pack(client_id, 4, code, len(plaintext) + 16)
        return records.seal(header, plaintext)

    content = b"across a rekey\n"
    send(record(RequestCode.SEND_FILE, rec.FileMeta(1, len(content), bytes(16), "y").encode()))
    assert rec.decode_resume(records.open(frames[0], 7)) == (1, 1)
    send(record(RequestCode.SEND_FILE, rec.FileChunk(1, 1, True, content).encode()))
    assert rec.decode_received(records.open(frames[0], 7)) == (1, len(content), b"d" * 32)
    effects = send(record(RequestCode.CRC_OK, rec.encode_file_id(1)))  # a rekeyed key
    assert any(isinstance(e, v4s.CommitUpload) for e in effects)
    assert rec.decode_file_id(records.open(frames[0], 7)) == 1
