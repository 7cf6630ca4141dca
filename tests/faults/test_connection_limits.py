"""--max-connections and --max-sessions-per-client: refused beyond, everyone else served."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from eft_protocol.wire import Acknowledged, FileReceived, Reconnected, ServerError
from tests.hostile.helpers import (
    Metrics,
    Peer,
    encrypted,
    field255,
    packet,
    records_of,
    request,
    same_content,
    wait_closed_on_server,
)
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def _store(peer: Peer, name: bytes, data: bytes) -> None:
    """One small file on an open session: 1603, 900, 1604."""
    peer.send(packet(peer.client_id, name, encrypted(peer.aes_key, data), orig_size=len(data)))
    assert isinstance(peer.receive(), FileReceived)
    peer.send(request(900, field255(name), peer.client_id))
    assert isinstance(peer.receive(), Acknowledged)


def test_connections_beyond_the_limit_are_refused_and_the_others_served(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(
        "--metrics-port", "0", "--shutdown-grace", "1", "--max-connections", "4"
    )
    metrics = Metrics(server)
    held = [Peer(server.address) for _ in range(4)]
    for index, peer in enumerate(held):
        peer.handshake(f"holder{index}")  # each is being served: the server counts it

    host, _, port = server.address.rpartition(":")
    flood = [socket.create_connection((host, int(port)), timeout=20) for _ in range(20)]
    for sock in flood:
        assert sock.recv(1) == b"", "a connection beyond the limit must be closed at once"
        sock.close()
    assert metrics.delta("eft_connections_refused_total") == 20
    refused = [r for r in server.logs() if r.get("event") == "connection_refused"]
    assert len(refused) == 20
    assert {r["reason"] for r in refused} == {"max_connections"}

    for index, peer in enumerate(held):  # the ones already in are served as before
        _store(peer, f"held{index}.txt".encode(), b"still served %d" % index)
        assert (server.data_dir / "files" / peer.client_id.hex() / f"held{index}.txt").exists()

    freed = held.pop()
    local = freed.local
    freed.close()
    wait_closed_on_server(server, local)
    client = client_factory("newcomer", server.address)
    source = write_random_file(tmp_path / "newcomer.bin", 300_000, seed=31)
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert same_content(server.stored(client.client_id_hex, "newcomer.bin"), source)
    assert metrics.delta("eft_connections_refused_total") == 20
    for peer in held:
        peer.close()


def test_more_sessions_of_one_client_than_allowed_get_1607_and_are_closed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        "--metrics-port", "0", "--shutdown-grace", "1", "--max-sessions-per-client", "2"
    )
    metrics = Metrics(server)
    first = Peer(server.address)
    session = first.handshake("multi")
    reconnect = request(827, field255(b"multi"), first.client_id)

    second = Peer(server.address)
    second.send(reconnect)
    assert isinstance(second.receive(), Reconnected)

    third = Peer(server.address)
    third.send(reconnect)
    assert isinstance(third.receive(), ServerError)
    assert third.closed_by_server()
    wait_closed_on_server(server, third.local)
    rejected = [r for r in records_of(server, third.local) if r.get("event") == "request_rejected"]
    assert [(r["reason"], r["closing"]) for r in rejected] == [("too_many_sessions", True)]
    assert metrics.delta("eft_protocol_errors_total", reason="too_many_sessions") == 1

    # The sessions within the limit go on, each with its own key.
    _store(first, b"first.txt", b"from the first session")
    assert session.ready

    # A session that ends frees its place.
    local = second.local
    second.close()
    wait_closed_on_server(server, local)
    fourth = Peer(server.address)
    fourth.send(reconnect)
    assert isinstance(fourth.receive(), Reconnected)
    assert metrics.delta("eft_protocol_errors_total", reason="too_many_sessions") == 1
    first.close()
    fourth.close()


def test_a_reconnect_refused_for_the_session_cap_is_not_counted_as_approved(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        "--metrics-port", "0", "--shutdown-grace", "1", "--max-sessions-per-client", "1"
    )
    first = Peer(server.address)
    first.handshake("capped")
    metrics = Metrics(server)
    second = Peer(server.address)
    second.send(request(827, field255(b"capped"), first.client_id))
    assert isinstance(second.receive(), ServerError)
    assert metrics.delta("eft_reconnects_total", outcome="approved") == 0
    assert not [r for r in records_of(server, second.local) if r.get("event") == "reconnected"]
