"""``eft_registered_clients`` counts both versions' clients, after a restart too.

The server set it from version 3's table alone at start, so a restarted server (the
Docker lab's ``compose restart server``) under-reported until the next registration.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.processes import ClientDir, ServerProcess


def registered(server: ServerProcess) -> float:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("eft_registered_clients "):
                return float(line.split()[1])
    raise AssertionError("no eft_registered_clients")


def test_registered_clients_survive_a_restart(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--metrics-host", "127.0.0.1", "--metrics-port", "0")
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello")
    for name, protocol in (("alice", 3), ("bob", 4)):
        client = client_factory(name, server.address)
        client.protocol = protocol
        assert client.run([note]).returncode == 0
    assert registered(server) == 2
    server.stop()
    server.start()  # any free port again
    assert registered(server) == 2, "the restarted server forgot to count a version"
