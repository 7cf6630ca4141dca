"""Version 4's message 1 under load (issue 18): the cookie reply, the per-address DH rate.

In memory, the time given: the gate (``eft_protocol.v4.admission``) and the two sessions.
A real server under a flood: tests/attacks/test_eft15_hello_flood.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_protocol.noise import KeyPair
from eft_protocol.notices import CookieSent, HandshakeRateLimited, HelloAnswered
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.admission import (
    COOKIE_ROTATION,
    MAX_TRACKED_ADDRESSES,
    Admission,
    HelloGate,
)
from eft_protocol.v4.client import ClientSessionV4, NotVersion4
from eft_protocol.v4.handshake import (
    COOKIE_REPLY_SIZE,
    cookie_reply_header,
    revision_1_hello_header,
    server_hello_header,
)

VECTORS = json.loads((Path(__file__).parent / "eft_v4_vectors.json").read_text())
HERE = bytes([127, 0, 0, 2])
THERE = bytes([127, 0, 0, 3])
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def _secrets() -> Callable[[int], bytes]:
    counter = iter(range(1, 256))
    return lambda size: bytes([next(counter)]) * size


def test_not_under_load_every_message_1_is_answered() -> None:
    gate = HelloGate(cookies_above=3)
    assert [gate.admit(HERE, KEY_A, b"", 10.0) for _ in range(3)] == [Admission.ANSWER] * 3
    # The fourth in the same second: under load now, and it has no cookie.
    assert gate.admit(HERE, KEY_A, b"", 10.5) is Admission.COOKIE
    # Two seconds on, the window is empty again.
    assert gate.admit(HERE, KEY_A, b"", 12.0) is Admission.ANSWER
    assert (gate.answered, gate.cookies_sent) == (4, 1)


def test_never_under_load_without_a_threshold() -> None:
    gate = HelloGate(cookies_above=None)
    assert all(gate.admit(HERE, KEY_A, b"", 1.0) is Admission.ANSWER for _ in range(1000))


def test_a_cookie_is_for_one_address_and_one_ephemeral_key() -> None:
    gate = HelloGate(cookies_above=0, random_bytes=_secrets())  # 0: always under load
    assert gate.admit(HERE, KEY_A, b"", 5.0) is Admission.COOKIE
    cookie = gate.cookie_for(HERE, KEY_A, 5.0)
    assert gate.admit(HERE, KEY_A, cookie, 6.0) is Admission.ANSWER
    assert gate.admit(THERE, KEY_A, cookie, 6.0) is Admission.COOKIE  # replayed elsewhere
    assert gate.admit(HERE, KEY_B, cookie, 6.0) is Admission.COOKIE  # another key
    assert gate.admit(HERE, KEY_A, bytes(16), 6.0) is Admission.COOKIE
    # The same message 1 again from the same address: answered (the rate limit bounds it).
    assert gate.admit(HERE, KEY_A, cookie, 7.0) is Admission.ANSWER


def test_the_secret_rotates_and_a_cookie_outlives_one_rotation_only() -> None:
    gate = HelloGate(cookies_above=0, random_bytes=_secrets())
    cookie = gate.cookie_for(HERE, KEY_A, 0.0)
    assert gate.admit(HERE, KEY_A, cookie, COOKIE_ROTATION + 1) is Admission.ANSWER
    assert gate.cookie_for(HERE, KEY_A, COOKIE_ROTATION + 1) != cookie  # a new secret
    assert gate.admit(HERE, KEY_A, cookie, 2 * COOKIE_ROTATION + 1) is Admission.COOKIE


def test_the_per_address_rate_limits_dh_answers_and_refills() -> None:
    gate = HelloGate(rate_per_address=2)
    assert [gate.admit(THERE, KEY_A, b"", 1.0) for _ in range(3)] == [
        Admission.ANSWER,
        Admission.ANSWER,
        Admission.RATE_LIMITED,
    ]
    assert gate.admit(HERE, KEY_A, b"", 1.0) is Admission.ANSWER  # another address
    assert gate.admit(THERE, KEY_A, b"", 1.5) is Admission.ANSWER  # half a second: 1 token
    assert gate.admit(THERE, KEY_A, b"", 1.5) is Admission.RATE_LIMITED
    assert gate.admit(THERE, KEY_A, b"", 0.5) is Admission.RATE_LIMITED  # the clock stepped back
    assert gate.rate_limited == 3


def test_cookie_replies_cost_no_token() -> None:
    """A flood that ignores cookie replies does not use up its address's DH share."""
    gate = HelloGate(cookies_above=0, rate_per_address=1, random_bytes=_secrets())
    for _ in range(50):
        assert gate.admit(HERE, KEY_A, b"", 3.0) is Admission.COOKIE
    assert gate.admit(HERE, KEY_A, gate.cookie_for(HERE, KEY_A, 3.0), 3.0) is Admission.ANSWER


def _pair(seed: int) -> KeyPair:
    return KeyPair.from_private(bytes([seed]) * 32)


Sessions = tuple[v4s.ServerSessionV4, ClientSessionV4]


def _sessions(gate: HelloGate, address: bytes = HERE) -> Sessions:
    server = v4s.ServerSessionV4(_pair(1), MemoryRegistry(), gate=gate, peer_address=address)
    client = ClientSessionV4(_pair(2), "alice", register=True, check_server=lambda _p: None)
    return server, client


def _to_server(server: v4s.ServerSessionV4, frame: bytes) -> list[object]:
    assert server.payload_size(frame[:23]) == len(frame) - 23
    return list(server.receive(frame[:23], frame[23:], now=100.0))


def _sent(effects: list[object]) -> list[bytes]:
    return [e.frame for e in effects if isinstance(e, v4s.SendFrame)]


def test_the_client_answers_a_cookie_reply_and_the_handshake_completes() -> None:
    server, client = _sessions(HelloGate(cookies_above=0))
    effects = _to_server(server, client.start())
    (reply,) = _sent(effects)
    assert reply[:7] == cookie_reply_header() and len(reply) == 7 + COOKIE_REPLY_SIZE
    assert any(isinstance(e, CookieSent) for e in effects)
    assert not any(isinstance(e, HelloAnswered) for e in effects)
    assert server.state is v4s.ServerStateV4.AWAITING_HELLO
    assert client.payload_size(reply[:7]) == COOKIE_REPLY_SIZE
    answer = client.receive(reply[:7], reply[7:])
    assert answer.cookie and len(answer.send) == 1
    effects = _to_server(server, answer.send[0])
    (hello,) = _sent(effects)
    assert hello[:7] == server_hello_header()
    assert any(isinstance(e, HelloAnswered) for e in effects)
    intent = client.receive(hello[:7], hello[7:]).send[0]
    (welcome,) = _sent(_to_server(server, intent))
    assert client.receive(welcome[:7], welcome[7:]).registered == client.client_id


def test_a_second_cookie_reply_is_not_read() -> None:
    server, client = _sessions(HelloGate(cookies_above=0))
    (reply,) = _sent(_to_server(server, client.start()))
    client.receive(reply[:7], reply[7:])
    with pytest.raises(NotVersion4):
        client.payload_size(reply[:7])


def test_a_client_that_ignores_the_cookie_is_closed() -> None:
    server, client = _sessions(HelloGate(cookies_above=0))
    first = client.start()
    _to_server(server, first)
    effects = _to_server(server, first)  # the same cookie-less message 1 again
    assert _sent(effects) == []
    assert any(isinstance(e, v4s.Close) for e in effects)


def test_a_replayed_message_1_gets_a_cookie_reply_from_another_address() -> None:
    gate = HelloGate(cookies_above=0)
    server, client = _sessions(gate)
    first = client.start()
    (reply,) = _sent(_to_server(server, first))
    second = client.receive(reply[:7], reply[7:]).send[0]
    for frame in (first, second):  # replayed byte for byte from 127.0.0.3
        attacker, _ = _sessions(gate, THERE)
        (answer,) = _sent(_to_server(attacker, frame))
        assert answer[:7] == cookie_reply_header()
    assert gate.answered == 0


def test_the_rate_limited_message_1_is_closed_without_an_answer() -> None:
    gate = HelloGate(rate_per_address=1)
    server, client = _sessions(gate)
    _to_server(server, client.start())
    server, client = _sessions(gate)
    effects = _to_server(server, client.start())
    assert _sent(effects) == []
    assert any(isinstance(e, HandshakeRateLimited) for e in effects)
    assert any(isinstance(e, v4s.Close) for e in effects)


def test_revision_1_hellos_are_closed_under_load() -> None:
    """Revision 1 cannot read a cookie reply: under load its hello would be a way
    around the cookies, so it is closed (it is refused after message 3 anyway)."""
    server, _client = _sessions(HelloGate(cookies_above=0))
    effects = _to_server(server, revision_1_hello_header() + bytes(range(32)))
    assert _sent(effects) == []
    assert any(isinstance(e, v4s.Close) for e in effects)


def test_the_cookie_vector() -> None:
    """tests.v4.make_vectors's cookie frames, the cookie recomputed with hashlib."""
    vector = VECTORS["cookie"]
    frames = [bytes.fromhex(frame["hex"]) for frame in vector["frames"]]
    ephemeral = frames[0][23:55]
    address = bytes.fromhex(vector["address"])
    data = b"eft/4 cookie" + bytes([len(address)]) + address + ephemeral
    key = bytes.fromhex(vector["secret"])
    cookie = hashlib.blake2s(data, key=key, digest_size=16).digest()
    assert frames[1] == cookie_reply_header() + cookie
    assert frames[2][23:55] == ephemeral  # the same ephemeral key, sent again
    assert frames[2][55:] == frames[0][55:] + cookie  # the offer, then the cookie
    assert int.from_bytes(frames[2][19:23], "little") == 32 + 6 + 16
    assert frames[0] == bytes.fromhex(VECTORS["frames"][0]["hex"])


def test_the_addresses_tracked_stay_bounded() -> None:
    """A flood from ever new addresses: the buckets kept stay under the bound, and the
    address in use keeps its own."""
    gate = HelloGate(rate_per_address=1)
    for n in range(3 * MAX_TRACKED_ADDRESSES):
        gate.admit(n.to_bytes(4, "big"), KEY_A, b"", 1.0)
        assert gate.admit(HERE, KEY_A, b"", 1.0) is not Admission.ANSWER or n == 0
    assert len(gate._buckets) <= MAX_TRACKED_ADDRESSES
