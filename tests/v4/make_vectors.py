"""Write tests/v4/eft_v4_vectors.json from the implementation, with pinned keys.

    python -m tests.v4.make_vectors          # rewrite the JSON
    python -m tests.v4.make_vectors --check  # exit 1 if the JSON is not what this makes
    python -m tests.v4.make_vectors --doc    # print the frames for docs/PROTOCOL-v4.md §13

The scenario (register ``alice``, upload ``hello.txt``, confirm with 900) runs through
the two sessions of ``eft_protocol.v4``; every value derived here (handshake hash, split
keys, plaintexts, rekeyed keys) is recomputed from the frames by a second path (a bare
``HandshakeState`` and fresh ``RecordCipher``s), so a frame the sessions got wrong
fails here rather than being frozen. After a wire change (a message's layout), run it
and review the diff; tests/v4/test_v4_vectors.py checks the JSON is current.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eft_protocol.noise import HandshakeState, KeyPair
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.admission import HelloGate
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import (
    NOISE_CIPHER,
    NOISE_PROTOCOL_NAME,
    REVISION,
    client_id_for,
    fingerprint,
    prologue,
)
from tests.v4.make_message_vectors import message_vectors

PATH = Path(__file__).parent / "eft_v4_vectors.json"

# The cacophony XX vector's keys (the design notes pinned the same ones).
KEYS = {
    "client_static_priv": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "client_ephemeral_priv": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "server_static_priv": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "server_ephemeral_priv": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
}
#: The next server key of the key-rotation vector (FEATURE_NEXT_KEY).
NEXT_STATIC_PRIV = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
#: The cookie vector's gate: its first secret (then 0x01 * 32, ...), the client's
#: source address (127.0.0.2, packed) and the time (the first 2-minute period).
COOKIE_SECRET = bytes(32)
COOKIE_ADDRESS = bytes([127, 0, 0, 2])
NAME = "alice"
FILE_NAME = "hello.txt"
CONTENT = b"hello world\n"
UPLOAD_ID = bytes(16)
MAX_FILE_SIZE = 1 << 30
#: REKEY applied this many times to k1 and k2 goes in the JSON, for other implementations.
REKEYS = 2


def _pair(name: str) -> KeyPair:
    return KeyPair.from_private(bytes.fromhex(KEYS[name]))


def _frames(
    client_rekey: int = rec.REKEY_INTERVAL, server_rekey: int = rec.REKEY_INTERVAL
) -> list[tuple[str, str, bytes]]:
    """The scenario's frames in order, as the two sessions produce them (tests shrink
    the rekey intervals)."""
    digest = file_digest(CONTENT).digest()
    server = v4s.ServerSessionV4(
        _pair("server_static_priv"),
        MemoryRegistry(),
        max_file_size=MAX_FILE_SIZE,
        ephemeral=_pair("server_ephemeral_priv"),
        rekey_interval=server_rekey,
    )
    client = ClientSessionV4(
        _pair("client_static_priv"),
        NAME,
        register=True,
        check_server=lambda _print: None,
        ephemeral=_pair("client_ephemeral_priv"),
        rekey_interval=client_rekey,
    )
    frames: list[tuple[str, str, bytes]] = []

    def to_server(label: str, frame: bytes) -> Any:
        frames.append(("C->S", label, frame))
        assert server.payload_size(frame[:23]) == len(frame) - 23
        effects = server.receive(frame[:23], frame[23:], now=0.0)
        for effect in list(effects):
            if isinstance(effect, v4s.OpenUpload):
                effects += server.upload_ready(0)
            if isinstance(effect, v4s.FinishUpload):
                effects += server.upload_complete(digest, now=0.0)
        (answer,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
        return answer

    def to_client(label: str, frame: bytes) -> Any:
        frames.append(("S->C", label, frame))
        assert client.payload_size(frame[:7]) == len(frame) - 7
        return client.receive(frame[:7], frame[7:])

    reply = to_client("1602 server hello", to_server("826 hello", client.start()))
    to_client("1600 registered", to_server("825 register", reply.send[0]))
    meta = client.begin_file(FILE_NAME, len(CONTENT), UPLOAD_ID)
    to_client("1604 start at chunk 1", to_server("828 file metadata", meta))
    chunk = client.chunk_record(1, CONTENT)
    client.file_hashed(digest)
    reply = to_client("1603 received", to_server("828 chunk 1 (final)", chunk))
    reply = to_client("1604 acknowledged", to_server("900 ok", reply.send[0]))
    assert reply.file_verified
    return frames


def _next_key_vector() -> dict[str, Any]:
    """Messages 1 and 2 of the same scenario from a server that announces a next key."""
    next_static = KeyPair.from_private(bytes.fromhex(NEXT_STATIC_PRIV))
    server = v4s.ServerSessionV4(
        _pair("server_static_priv"),
        MemoryRegistry(),
        max_file_size=MAX_FILE_SIZE,
        ephemeral=_pair("server_ephemeral_priv"),
        next_static=next_static,
    )
    client = ClientSessionV4(
        _pair("client_static_priv"),
        NAME,
        register=True,
        check_server=lambda _print: None,
        ephemeral=_pair("client_ephemeral_priv"),
    )
    first = client.start()
    effects = server.receive(first[:23], first[23:], now=0.0)
    (second,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    client.receive(second[:7], second[7:])
    assert client.next_server_fingerprint == fingerprint(next_static.public)
    reader = HandshakeState(
        initiator=True,
        static=_pair("client_static_priv"),
        prologue=prologue(first[:23]),
        ephemeral=_pair("client_ephemeral_priv"),
        cipher=NOISE_CIPHER,
    )
    reader.write_message(first[23:][32:])
    hello = reader.read_message(second[7:])
    return {
        "next_static_priv": NEXT_STATIC_PRIV,
        "next_static_pub": next_static.public.hex(),
        "next_fingerprint": fingerprint(next_static.public),
        "frame_1_hex": first.hex(),
        "frame_2_hex": second.hex(),
        "server_hello": hello.hex(),
        "proof": hello[-32:].hex(),
    }


def _cookie_vector() -> dict[str, Any]:
    """A server under load (``cookies_above=0``): the scenario's message 1 gets a cookie
    reply; message 1 again, the cookie in the offer, gets the server hello."""
    secrets = iter(bytes([n]) * 32 for n in range(256))
    gate = HelloGate(cookies_above=0, random_bytes=lambda _size: next(secrets))
    server = v4s.ServerSessionV4(
        _pair("server_static_priv"),
        MemoryRegistry(),
        max_file_size=MAX_FILE_SIZE,
        ephemeral=_pair("server_ephemeral_priv"),
        gate=gate,
        peer_address=COOKIE_ADDRESS,
    )
    client = ClientSessionV4(
        _pair("client_static_priv"),
        NAME,
        register=True,
        check_server=lambda _print: None,
        ephemeral=_pair("client_ephemeral_priv"),
    )
    frames = []
    frame = client.start()
    for _ in range(2):
        frames.append(frame)
        effects = server.receive(frame[:23], frame[23:], now=0.0)
        (answer,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
        frames.append(answer)
        assert client.payload_size(answer[:7]) == len(answer) - 7
        frame = client.receive(answer[:7], answer[7:]).send[0]
    assert client.server_hello is not None  # the second answer was the server hello
    return {
        "doc": "cookie = BLAKE2s-128(key = secret, 'eft/4 cookie' || u8 len(addr) || addr || e)",
        "secret": COOKIE_SECRET.hex(),
        "address": COOKIE_ADDRESS.hex(),
        "frames": [
            {"dir": direction, "label": label, "hex": raw.hex(), "note": note}
            for (direction, label, note), raw in zip(
                (
                    ("C->S", "826 hello", f"offer: {frames[0][55:].hex()}"),
                    ("S->C", "1602 cookie reply", f"cookie: {frames[1][7:].hex()}"),
                    ("C->S", "826 hello with the cookie", f"offer: {frames[2][55:].hex()}"),
                    ("S->C", "1602 server hello", "as frame 2 of the scenario, for this message 1"),
                ),
                frames,
                strict=True,
            )
        ],
        "cookie": frames[1][7:].hex(),
    }


def build() -> dict[str, Any]:
    frames = _frames()
    initiator = HandshakeState(
        initiator=True,
        static=_pair("client_static_priv"),
        prologue=prologue(frames[0][2][:23]),
        ephemeral=_pair("client_ephemeral_priv"),
        cipher=NOISE_CIPHER,
    )
    responder = HandshakeState(
        initiator=False,
        static=_pair("server_static_priv"),
        prologue=prologue(frames[0][2][:23]),
        ephemeral=_pair("server_ephemeral_priv"),
        cipher=NOISE_CIPHER,
    )
    # Each message is read by one side and written again by the other: equal bytes.
    offer = responder.read_message(frames[0][2][23:])
    assert initiator.write_message(offer) == frames[0][2][23:]
    server_hello = initiator.read_message(frames[1][2][7:])
    assert responder.write_message(server_hello) == frames[1][2][7:]
    intent = responder.read_message(frames[2][2][23:])
    assert initiator.write_message(intent) == frames[2][2][23:]
    assert initiator.symmetric.h == responder.symmetric.h
    k1, k2 = (state.key for state in responder.symmetric.split())
    assert k1 is not None and k2 is not None
    ciphers = {"C->S": rec.RecordCipher(k1), "S->C": rec.RecordCipher(k2)}
    out_frames: list[dict[str, Any]] = []
    payloads = {0: offer, 1: server_hello, 2: intent}
    for index, (direction, label, frame) in enumerate(frames):
        entry: dict[str, Any] = {"dir": direction, "label": label, "hex": frame.hex()}
        if index in payloads:
            entry["noise_payload"] = payloads[index].hex()
        else:
            header_size = 23 if direction == "C->S" else 7
            cipher = ciphers[direction]
            entry["n"] = cipher.counter
            entry["plaintext"] = cipher.open(frame[:header_size], frame[header_size:]).hex()
        out_frames.append(entry)
    rekeyed = {"k1": [k1.hex()], "k2": [k2.hex()]}
    for name, key in (("k1", k1), ("k2", k2)):
        cipher = rec.RecordCipher(key, rekey_interval=1)
        for _ in range(REKEYS):
            cipher.seal(b"", b"")  # one record, then REKEY
            rekeyed[name].append(cipher.key.hex())
    client_static = _pair("client_static_priv")
    server_static = _pair("server_static_priv")
    return {
        "protocol_name": NOISE_PROTOCOL_NAME.decode(),
        "revision": REVISION,
        "keys": KEYS,
        "client_static_pub": client_static.public.hex(),
        "server_static_pub": server_static.public.hex(),
        "server_fingerprint": fingerprint(server_static.public),
        "client_id": client_id_for(client_static.public).hex(),
        "prologue": prologue(frames[0][2][:23]).hex(),
        "handshake_hash": initiator.symmetric.h.hex(),
        "k1": k1.hex(),
        "k2": k2.hex(),
        "rekey": {
            "doc": "key after 0, 1, 2 REKEYs: k' = AESGCM(k, nonce 0^4 || ff*8, ad '', 0^32)[:32]",
            **rekeyed,
        },
        "max_file_size": MAX_FILE_SIZE,
        "upload_id": UPLOAD_ID.hex(),
        "file": {
            "name": FILE_NAME,
            "content_hex": CONTENT.hex(),
            "blake3": file_digest(CONTENT).hexdigest(),
        },
        "frames": out_frames,
        "next_key": _next_key_vector(),
        "cookie": _cookie_vector(),
        # Record plaintexts of the file messages, with their fields (§6.6).
        "messages": message_vectors(CONTENT),
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1) + "\n"


def doc_block(vectors: dict[str, Any]) -> str:
    """The frames as docs/PROTOCOL-v4.md §13 lists them."""
    lines = []
    for number, frame in enumerate(vectors["frames"], start=1):
        raw = bytes.fromhex(frame["hex"])
        counter = f", n={frame['n']}" if "n" in frame else ""
        lines.append(f"{number:<2} {frame['dir']} {frame['label']} ({len(raw)}){counter}")
        lines.append(f"   {frame['hex']}")
        if "plaintext" in frame:
            lines.append(f"   pt: {frame['plaintext']}")
        elif "note" in frame:
            lines.append(f"   {frame['note']}")
        else:
            lines.append(f"   noise payload: {frame['noise_payload']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--doc", action="store_true", help="print the frames for the spec")
    args = parser.parse_args(argv)
    vectors = build()
    if args.doc:
        print(doc_block(vectors))
        print()
        print(doc_block(vectors["cookie"]))
        return 0
    text = render(vectors)
    if args.check:
        current = PATH.read_text() == text
        print(f"{PATH}: {'current' if current else 'STALE: run python -m tests.v4.make_vectors'}")
        return 0 if current else 1
    PATH.write_text(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
