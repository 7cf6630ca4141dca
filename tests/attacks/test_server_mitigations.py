"""Mitigations our version-3 server lacks today, as strict expected failures.

Each test states what the server should do; it fails today (xfail) and will start
passing when the mitigation lands, at which point ``strict=True`` makes it fail until
the xfail mark is removed and the matching entry of ``EXPECTED`` is updated.
"""

from __future__ import annotations

import time

import pytest

from eft_protocol import crypto
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import PublicKeyRequest, RegisterRequest
from tests.support.processes import ServerProcess
from tests.support.raw_client import RawClient


@pytest.mark.xfail(
    strict=True,
    reason="EFT-03: the server accepts an 826 for a registered id on any connection "
    "(the (IDLE, KEY_ACCEPTED) transition), so an eavesdropper can claim a new client",
)
def test_an_826_from_a_connection_that_did_not_register_the_id_is_refused(
    server: ServerProcess,
) -> None:
    victim = RawClient.to(server.address)
    victim.send(RegisterRequest(bytes(16), "alice").encode())
    registered = victim.receive()
    assert registered.code == ResponseCode.REGISTERED
    client_id = registered.client_id  # type: ignore[union-attr]

    intruder = RawClient.to(server.address)
    key = crypto.generate_rsa_key()
    intruder.send(PublicKeyRequest(client_id, "alice", crypto.public_key_der(key)).encode())
    answer = intruder.receive()
    victim.close()
    intruder.close()

    assert answer.code == ResponseCode.SERVER_ERROR


@pytest.mark.xfail(
    strict=True,
    reason="EFT-15: --read-timeout bounds each read, not a frame: a peer sending one byte "
    "per interval holds a connection forever",
)
def test_a_frame_trickled_one_byte_at_a_time_is_cut_off(
    server_factory: type[ServerProcess],
) -> None:
    server = server_factory("--read-timeout", "1", "--idle-timeout", "1")
    client = RawClient.to(server.address)
    client.connect_session("slowpoke")
    frame = RegisterRequest(bytes(16), "x").encode()  # answered 1607 when it arrives whole
    deadline = time.monotonic() + 1.8
    sent = 0
    try:
        while time.monotonic() < deadline:
            client.send(frame[sent : sent + 1])
            sent += 1
            time.sleep(0.3)
        # Nearly two read timeouts have passed inside one frame: the server should have
        # closed the connection, so the rest of the frame gets no answer.
        client.sock.settimeout(2)
        with pytest.raises(ConnectionError):
            _finish(client, frame[sent:])
    finally:
        client.close()


def _finish(client: RawClient, rest: bytes) -> None:
    client.send(rest)
    client.receive()
