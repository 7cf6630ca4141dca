"""Mitigations our version-3 server adds to what the protocol allows.

Each was found missing by the attacks (docs/SECURITY.md) and is now in the server:
an 826 only on the connection that registered the id (EFT-03), and a frame that must
arrive whole within the read timeout plus its size at a minimum rate (EFT-15).
"""

from __future__ import annotations

import select
import socket

from eft_protocol import crypto
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import PublicKeyRequest, RegisterRequest
from tests.support.processes import ServerProcess
from tests.support.raw_client import RawClient


def test_an_826_from_a_connection_that_did_not_register_the_id_is_refused(
    server: ServerProcess,
) -> None:
    victim = RawClient(server.address)
    victim.send(RegisterRequest(bytes(16), "alice").encode())
    registered = victim.receive()
    assert registered.code == ResponseCode.REGISTERED
    client_id = registered.client_id  # type: ignore[union-attr]

    intruder = RawClient(server.address)
    key = crypto.generate_rsa_key()
    intruder.send(PublicKeyRequest(client_id, "alice", crypto.public_key_der(key)).encode())
    answer = intruder.receive()
    victim.close()
    intruder.close()

    assert answer.code == ResponseCode.SERVER_ERROR


def test_a_frame_trickled_one_byte_at_a_time_is_cut_off(
    server_factory: type[ServerProcess],
) -> None:
    server = server_factory("--read-timeout", "1", "--idle-timeout", "1")
    client = RawClient(server.address)
    client.handshake("slowpoke")
    frame = RegisterRequest(bytes(16), "x").encode()  # answered 1607 when it arrives whole
    try:
        # One byte every 50 ms: the whole frame would take about 14 s, 14 read timeouts.
        # The server must close the connection before the frame is complete; no clock
        # here decides whether it did.
        sent = _trickle_until_closed(client, frame)
    finally:
        client.close()
    assert sent < len(frame) - 1, "the server let the whole frame trickle in"
    timeouts = [r for r in server.logs() if r.get("event") == "connection_timeout"]
    assert [r["kind"] for r in timeouts] == ["read"]


def _trickle_until_closed(client: RawClient, frame: bytes) -> int:
    """Bytes sent before the server closed the connection (all but one if it never did)."""
    for sent in range(len(frame) - 1):
        try:
            client.send(frame[sent : sent + 1])
        except ConnectionError:
            return sent
        readable, _, _ = select.select([client.sock], [], [], 0.05)
        try:
            if readable and client.sock.recv(1, socket.MSG_PEEK) == b"":
                return sent  # end of file: closed by the server
        except ConnectionError:
            return sent
    return len(frame) - 1
