"""Clients through the real HAProxy (TCP mode, send-proxy-v2): the replica sees the
client's address; its health check is the replica's event loop answering a LOCAL
header, so a SIGSTOPped replica is marked down and new clients go to the other."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_lab.haproxy import HAProxyProcess
from eft_lab.scrape import scrape, total
from tests.support.processes import ClientDir, ServerProcess, write_random_file

from .conftest import REPLICA_ARGS, proxy_address

CLIENT_ADDRESS = ("--source-address", "127.0.0.2")  # not HAProxy's 127.0.0.1


def _peers(server: ServerProcess) -> list[str]:
    return [r["peer"] for r in server.logs() if r.get("event") == "connection_opened"]


def _proxy_headers(server: ServerProcess, result: str) -> float:
    assert server.metrics_port is not None
    return total(scrape(server.metrics_port), "eft_proxy_headers_total", result=result)


@pytest.mark.parametrize("protocol", [3, 4])
def test_the_replica_sees_the_clients_address(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    tmp_path: Path,
    protocol: int,
) -> None:
    server = server_factory(*REPLICA_ARGS)
    front = haproxy_factory({"r1": server})
    assert front.wait_for_states({"r1": "UP"}) == {"r1": "UP"}
    client = client_factory("alice", front.bind)
    client.protocol = protocol
    source = write_random_file(tmp_path / "a.bin", 300_000)
    run = client.run([source], *CLIENT_ADDRESS)
    assert run.returncode == 0, run.stderr
    peers = _peers(server)
    assert peers and all(peer.startswith("127.0.0.2:") for peer in peers), peers
    assert _proxy_headers(server, "proxied") == len(peers)
    assert _proxy_headers(server, "health_check") >= 1  # the check that made it UP
    stored = server.data_dir / "files" / client.client_id_hex / "a.bin"
    if protocol == 3:
        assert stored.read_bytes() == source.read_bytes()


def test_the_proxy_port_requires_the_header(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(*REPLICA_ARGS)
    host, port = proxy_address(server).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # A version-3 request header, as a client sent straight to the proxy port would.
        sock.sendall(bytes(16) + b"\x03" + bytes(7))
        assert sock.recv(1) == b""  # closed, nothing answered
    assert _proxy_headers(server, "invalid") == 1
    # The normal port never reads a PROXY header: a client there is served as ever.
    client = client_factory("direct", server.address)
    run = client.run([write_random_file(tmp_path / "d.bin", 1000)])
    assert run.returncode == 0, run.stderr
    assert _peers(server) == [p for p in _peers(server) if p.startswith("127.0.0.1:")]


def test_a_stopped_replica_is_marked_down_and_skipped(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    tmp_path: Path,
) -> None:
    first = server_factory(*REPLICA_ARGS, name="first")
    second = server_factory(*REPLICA_ARGS, name="second")
    front = haproxy_factory({"r1": first, "r2": second})
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGSTOP)  # its kernel still accepts connections
    try:
        assert front.wait_for_states({"r1": "DOWN"}) == {"r1": "DOWN", "r2": "UP"}
        for number in range(3):
            client = client_factory(f"bob{number}", front.bind)
            run = client.run([write_random_file(tmp_path / f"b{number}.bin", 1000)])
            assert run.returncode == 0, run.stderr
        assert len(_peers(second)) == 3
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    # Its loop answers again: the check brings it back.
    assert front.wait_for_states({"r1": "UP"}) == {"r1": "UP", "r2": "UP"}
    assert _peers(first) == []


def test_per_address_limits_count_the_clients_address(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    tmp_path: Path,
) -> None:
    """One new name a minute per address: through HAProxy every connection comes from
    127.0.0.1, so only the header's address lets a second client register."""
    server = server_factory(*REPLICA_ARGS, "--register-rate-per-address", "1")
    front = haproxy_factory({"r1": server})
    assert front.wait_for_states({"r1": "UP"}) == {"r1": "UP"}
    source = write_random_file(tmp_path / "c.bin", 1000)
    outcomes = {}
    for name, address in (("carl", "127.0.0.2"), ("cleo", "127.0.0.3"), ("cora", "127.0.0.2")):
        run = client_factory(name, front.bind).run([source], "--source-address", address)
        outcomes[name] = run.returncode == 0
    assert outcomes == {"carl": True, "cleo": True, "cora": False}
    assert server.metrics_port is not None
    refused = total(
        scrape(server.metrics_port),
        "eft_registrations_refused_total",
        reason="rate_limited_address",
    )
    assert refused == 1
