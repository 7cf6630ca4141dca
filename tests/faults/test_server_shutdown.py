"""SIGTERM: stop accepting, let transfers in flight finish within --shutdown-grace, exit 0."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.helpers import (
    WAIT,
    MiB,
    Peer,
    encrypted,
    packet,
    part_files,
    same_content,
    wait_for_log,
    wait_until,
)
from tests.support.processes import ClientDir, ServerProcess, finish, paused, write_random_file


def _refuses_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.settimeout(5)
            return sock.recv(1) == b""  # accepted, then closed at once: refused too
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def test_sigterm_lets_the_transfer_in_flight_finish_and_exits_0(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--shutdown-grace", "60")
    client = client_factory("tess", server.address)
    source = write_random_file(tmp_path / "in-flight.bin", 16 * MiB, seed=21)
    proc = client.start([source], "--packet-size", "4096")
    wait_until(lambda: part_files(server.data_dir) or proc.poll() is not None, "the upload")
    assert server.proc is not None
    # The client is paused until the server is stopping, so the transfer is in flight at
    # the SIGTERM however fast the machine is.
    with paused(proc):
        assert part_files(server.data_dir), "the upload ended too soon"
        server.proc.send_signal(signal.SIGTERM)
        stopping = wait_for_log(server, "shutting_down")
        assert stopping["connections"] == 1
        assert _refuses_connections(server.address), "a stopping server must not take clients"

    run = finish(proc)
    assert run.returncode == 0, run.stderr
    assert server.proc.wait(WAIT) == 0
    stored = server.stored(client.client_id_hex, "in-flight.bin")
    assert same_content(stored, source)
    assert part_files(server.data_dir) == []
    events = [r["event"] for r in server.logs()]
    assert events.index("shutting_down") < events.index("stopped")
    verified_at = max(
        i
        for i, r in enumerate(server.logs())
        if r.get("event") == "transfer" and r.get("outcome") == "verified"
    )
    assert events.index("shutting_down") < verified_at < events.index("stopped")


def test_a_transfer_that_outlasts_the_grace_is_dropped_cleanly(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory("--shutdown-grace", "1")
    peer = Peer(server.address)
    peer.handshake("slowpoke")
    content = encrypted(peer.aes_key, bytes(100_000))
    frame = packet(peer.client_id, b"unfinished.bin", content, orig_size=100_000)
    peer.send(frame[: len(frame) // 2])  # and then nothing: the upload stays open
    wait_until(lambda: part_files(server.data_dir), "the upload to open")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(WAIT) == 0
    assert peer.closed_by_server()
    assert part_files(server.data_dir) == []
    assert not (server.data_dir / "files" / peer.client_id.hex()).exists()
    outcomes = [r.get("outcome") for r in server.logs() if r.get("event") == "transfer"]
    assert outcomes == ["aborted"]
    assert [r["event"] for r in server.logs()][-1] == "stopped"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_server_stops_at_once_with_exit_0(
    server_factory: Callable[..., ServerProcess], sig: signal.Signals
) -> None:
    server = server_factory("--shutdown-grace", "60")
    assert server.proc is not None
    server.proc.send_signal(sig)
    assert server.proc.wait(WAIT) == 0
    assert wait_for_log(server, "stopped")
