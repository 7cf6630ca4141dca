"""Peers that stall: inside a frame (--read-timeout), between requests (--idle-timeout),
before the key exchange (--handshake-timeout); and leftovers (--orphan-timeout).

Each limit is set to 1 s here. The tests wait for the server to act (it closes the
connection, logs, counts) and never assume how long that takes.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

from eft_protocol.wire import FileReceived
from tests.hostile.helpers import (
    WAIT,
    Metrics,
    Peer,
    encrypted,
    header,
    packet,
    part_files,
    records_of,
    same_content,
    wait_closed_on_server,
    wait_for_log,
    wait_until,
)
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def _good_client_completes(
    client_factory: Callable[..., ClientDir], server: ServerProcess, tmp_path: Path, name: str
) -> None:
    client = client_factory(name, server.address)
    source = write_random_file(tmp_path / f"{name}.bin", 1 << 20, seed=len(name))
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert same_content(server.stored(client.client_id_hex, source.name), source)


def test_a_peer_that_stalls_mid_frame_is_timed_out_and_others_are_served(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(
        "--metrics-port",
        "0",
        "--shutdown-grace",
        "1",
        "--read-timeout",
        "1",
        "--idle-timeout",
        "60",
    )
    metrics = Metrics(server)
    peer = Peer(server.address)
    peer.handshake("staller")
    data = bytes(50_000)
    content = encrypted(peer.aes_key, data)
    frame = packet(peer.client_id, b"stalled.bin", content, orig_size=len(data))
    peer.send(frame[: len(frame) // 2])  # half a packet, then silence
    wait_until(lambda: part_files(server.data_dir), "the stalled upload to open")

    _good_client_completes(client_factory, server, tmp_path, "bystander")

    assert peer.closed_by_server()
    local = peer.local
    wait_closed_on_server(server, local)
    timeouts = [r for r in records_of(server, local) if r.get("event") == "connection_timeout"]
    assert [t["kind"] for t in timeouts] == ["read"]
    assert metrics.delta("eft_connection_timeouts_total", kind="read") == 1
    assert metrics.delta("eft_connection_timeouts_total") == 1
    outcomes = [r["outcome"] for r in records_of(server, local) if r.get("event") == "transfer"]
    assert outcomes == ["aborted"]
    assert part_files(server.data_dir) == []
    assert not (server.data_dir / "files" / peer.client_id.hex()).exists()


def test_a_client_that_never_gives_its_verdict_is_closed_and_nothing_is_stored(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--metrics-port", "0", "--shutdown-grace", "1", "--idle-timeout", "1")
    metrics = Metrics(server)
    peer = Peer(server.address)
    peer.handshake("undecided")
    data = b"waiting for a 900 that never comes"
    peer.send(
        packet(peer.client_id, b"limbo.txt", encrypted(peer.aes_key, data), orig_size=len(data))
    )
    assert isinstance(peer.receive(), FileReceived)  # 1603; the client never answers it
    assert peer.closed_by_server()
    wait_closed_on_server(server, peer.local)
    assert metrics.delta("eft_connection_timeouts_total", kind="idle") == 1
    assert part_files(server.data_dir) == []
    assert not (server.data_dir / "files" / peer.client_id.hex()).exists()


def test_peers_that_never_finish_the_handshake_are_closed(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(
        "--metrics-port", "0", "--handshake-timeout", "2", "--read-timeout", "60"
    )
    metrics = Metrics(server)
    host, _, port = server.address.rpartition(":")
    silent = socket.create_connection((host, int(port)), timeout=20)
    half_header = socket.create_connection((host, int(port)), timeout=20)
    half_header.sendall(header(825, 255)[:10])
    no_key = Peer(server.address)
    no_key.register("keyless")  # 1600, then never the 826
    dripping = Peer(server.address)
    dripping.send(header(825, 255))  # then one byte of the name at a time, too slowly

    _good_client_completes(client_factory, server, tmp_path, "patient")

    assert _drip_until_closed(dripping), "a peer dripping bytes must not outlive the handshake"
    for sock in (silent, half_header):
        assert sock.recv(1) == b"", "the server must close a silent peer"
    assert no_key.closed_by_server()
    wait_until(
        lambda: metrics.delta("eft_connection_timeouts_total", kind="handshake") == 4,
        "four handshake timeouts",
    )
    timeouts = [
        r for r in records_of(server, no_key.local) if r.get("event") == "connection_timeout"
    ]
    assert [t["kind"] for t in timeouts] == ["handshake"]
    assert metrics.delta("eft_connection_timeouts_total", kind="read") == 0
    for sock in (silent, half_header):
        sock.close()


def _drip_until_closed(peer: Peer) -> bool:
    """Send one byte at a time until the server closes the connection."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if select.select([peer.sock], [], [], 0.05)[0]:  # readable: the server closed it
            return peer.closed_by_server()
        try:
            peer.sock.send(b"d")
        except OSError:
            return True
    return False


def test_a_peer_that_connects_and_leaves_is_not_a_timeout(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        "--metrics-port", "0", "--shutdown-grace", "1", "--handshake-timeout", "1"
    )
    metrics = Metrics(server)
    host, _, port = server.address.rpartition(":")
    socket.create_connection((host, int(port)), timeout=20).close()
    silent = socket.create_connection((host, int(port)), timeout=20)
    assert silent.recv(1) == b""
    silent.close()
    wait_until(
        lambda: metrics.delta("eft_connection_timeouts_total", kind="handshake") >= 1,
        "the silent peer's timeout",
    )
    assert metrics.delta("eft_connection_timeouts_total", kind="handshake") == 1
    assert any(
        r.get("event") == "connection_timeout" and r.get("kind") == "handshake"
        for r in server.logs()
    )


def test_stale_temporary_files_are_swept_while_running(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--orphan-timeout", "1")
    stale = server.data_dir / "tmp" / "left-by-a-crash.part"
    stale.write_bytes(b"half an upload")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    record = wait_for_log(server, "leftovers_removed")
    assert record["temporary_files"] == 1
    assert not stale.exists()
