"""Durable before acknowledged, and the records reconciled with the disk at start-up.

The server sends a response that reports a change (1600, 1602, 1605, 1604 after 900)
only once the SQLite group commit holding that change is done. So at the moment the
client holds the response, another reader of ``eft.sqlite3`` already sees the change,
and a SIGKILL right then loses nothing: checked here at each step, with no waiting.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eft_protocol.cksum import cksum
from eft_protocol.wire import Acknowledged, FileReceived, Reconnected
from tests.faults.test_client_killed import file_rows, files_on_disk
from tests.hostile.helpers import Peer, encrypted, field255, packet, request, wait_for_log
from tests.support.processes import ServerProcess


def rows(data_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    uri = f"file:{data_dir / 'eft.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return list(db.execute(query, args))


def test_each_change_is_in_the_database_when_its_response_arrives(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--shutdown-grace", "1")
    data = server.data_dir
    peers = []
    for index in range(5):  # several rounds: a response sent before its commit shows
        name = f"durable{index}"
        peer = Peer(server.address)
        session = peer.register(name)  # 825 -> 1600
        query = "SELECT Name, PublicKey FROM clients WHERE ID = ?"
        assert rows(data, query, session.client_id) == [(name, None)]
        peer.send_key()  # 826 -> 1602
        ((public_key,),) = rows(data, "SELECT PublicKey FROM clients WHERE ID = ?", peer.client_id)
        assert public_key is not None and len(public_key) == 160

        content = b"acknowledged means on disk %d\n" % index
        frame = packet(
            peer.client_id, b"kept.txt", encrypted(peer.aes_key, content), orig_size=len(content)
        )
        peer.send(frame)
        assert isinstance(peer.receive(), FileReceived)
        assert (peer.client_id.hex(), "kept.txt") not in file_rows(data)  # not before 900
        peer.send(request(900, field255(b"kept.txt"), peer.client_id))
        assert isinstance(peer.receive(), Acknowledged)  # 1604
        query = "SELECT FileName, Size, Cksum, Verified FROM files WHERE ID = ?"
        assert rows(data, query, peer.client_id) == [("kept.txt", len(content), cksum(content), 1)]
        assert (data / "files" / peer.client_id.hex() / "kept.txt").read_bytes() == content
        peers.append((name, peer))

    # Killed right after the acknowledgements: everything acknowledged is still there.
    server.restart(signal.SIGKILL)
    for name, peer in peers:
        peer.close()
        again = Peer(server.address)
        again.send(request(827, field255(name.encode()), peer.client_id))
        assert isinstance(again.receive(), Reconnected)  # 1605: the id and key survived
        again.close()
    assert file_rows(data) == {(peer.client_id.hex(), "kept.txt") for _, peer in peers}


def test_start_up_reconciles_the_file_records_with_the_disk(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--shutdown-grace", "1")
    peer = Peer(server.address)
    peer.handshake("reconciled")
    for name in (b"stays.txt", b"vanishes.txt"):
        data = b"content of " + name
        peer.send(packet(peer.client_id, name, encrypted(peer.aes_key, data), orig_size=len(data)))
        assert isinstance(peer.receive(), FileReceived)
        peer.send(request(900, field255(name), peer.client_id))
        assert isinstance(peer.receive(), Acknowledged)
    peer.close()
    server.stop()

    client_dir = server.data_dir / "files" / peer.client_id.hex()
    (client_dir / "vanishes.txt").unlink()  # a record whose file is gone
    appeared = b"renamed into place, then the crash took its record"
    (client_dir / "appeared.txt").write_bytes(appeared)  # a file without a record
    stranger = server.data_dir / "files" / ("ab" * 16)
    stranger.mkdir()
    (stranger / "unknown.txt").write_bytes(b"a client the registry never knew")
    (server.data_dir / "tmp" / "crashed.part").write_bytes(b"half")

    server.start()  # on the port it holds
    recovered = wait_for_log(server, "recovered")
    assert recovered["orphaned_temporary_files"] == 1
    assert recovered["file_records_added"] == 1
    assert recovered["file_records_removed"] == 1
    assert list((server.data_dir / "tmp").iterdir()) == []
    server.stop()
    known = {entry for entry in files_on_disk(server.data_dir) if entry[0] != "ab" * 16}
    assert (
        file_rows(server.data_dir)
        == known
        == {
            (peer.client_id.hex(), "stays.txt"),
            (peer.client_id.hex(), "appeared.txt"),
        }
    )
    assert rows(
        server.data_dir, "SELECT Size, Cksum FROM files WHERE FileName = 'appeared.txt'"
    ) == [(len(appeared), cksum(appeared))]
    assert (stranger / "unknown.txt").exists(), "files of unknown clients are left alone"
