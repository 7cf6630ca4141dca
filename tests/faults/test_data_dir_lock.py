"""One server per data directory: a second one refuses to start and touches nothing.

Before the lock, a second server on the same --data-dir started, removed the first
one's temporary files at start-up (so its upload in flight failed), and the two wrote
one registry from in-memory copies that disagreed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from eft_lab.processes import clean_env, read_json_lines
from eft_protocol.wire import Acknowledged, FileReceived
from eft_server.cli import EXIT_DATA_DIR_LOCKED
from tests.hostile.helpers import Peer, encrypted, field255, packet, request, wait_until
from tests.support.processes import ServerProcess


def test_a_second_server_on_the_same_data_directory_refuses_and_the_first_goes_on(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    peer = Peer(server.address)
    peer.handshake("first")
    content = b"an upload in flight while a second server tries the directory\n" * 64
    frame = packet(
        peer.client_id, b"inflight.txt", encrypted(peer.aes_key, content), orig_size=len(content)
    )
    peer.send(frame[: len(frame) // 2])  # half of it: its temporary file is open
    tmp = server.data_dir / "tmp"
    wait_until(lambda: list(tmp.glob("*.part")) or None, "the upload's temporary file")

    log = server.data_dir.parent / "second.log"
    with open(log, "wb") as out:
        second = subprocess.run(
            [sys.executable, "-m", "eft_server", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(server.data_dir), "--log-format", "json"],
            stdout=out, stderr=subprocess.STDOUT, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert second.returncode == EXIT_DATA_DIR_LOCKED, log.read_text()
    (refusal,) = [r for r in read_json_lines(log) if r.get("event") == "data_dir_locked"]
    assert f"pid {server.proc.pid if server.proc else '?'}" in refusal["message"]
    assert not any(r.get("event") == "listening" for r in read_json_lines(log))

    assert len(list(tmp.glob("*.part"))) == 1, "the first server's upload is untouched"
    peer.send(frame[len(frame) // 2 :])
    assert isinstance(peer.receive(), FileReceived)
    peer.send(request(900, field255(b"inflight.txt"), peer.client_id))
    assert isinstance(peer.receive(), Acknowledged)
    stored = server.data_dir / "files" / peer.client_id.hex() / "inflight.txt"
    assert stored.read_bytes() == content
    peer.close()
    # Stopped, the directory is free again (the lock dies with its holder).
    server.stop()
    server.start()
