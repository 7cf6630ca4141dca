"""Durable before acknowledged, call by call: the server's own file-system calls, recorded
by the test hook (tests/support/fshook) as they are made, show that when 1604 reaches the
client the file was synced, renamed to its name, and its directory synced.

These fail if ``os.fsync`` is dropped from either version's commit, or if a version
answers 1604 before its commit (both checked by planting the bug).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eft_protocol.v4.file_digest import file_digest
from eft_protocol.wire import Acknowledged, FileReceived
from tests.hostile.helpers import Peer, encrypted, field255, packet, request
from tests.support.fs_faults import V4Peer, hooked_server


def _index(calls: list[dict[str, Any]], op: str, path: str) -> int:
    for number, call in enumerate(calls):
        if call["op"] == op and call["path"] == path:
            return number
    raise AssertionError(f"no {op} of {path} among {[(c['op'], c['path']) for c in calls]}")


def _check_commit(calls: list[dict[str, Any]], final: str) -> None:
    """``final`` was renamed into place from a file that had been synced after its last
    write, and its directory synced after the rename."""
    rename = _index(calls, "rename", final)
    temp = calls[rename]["source"]
    last_write = max(n for n, c in enumerate(calls) if c["op"] == "write" and c["path"] == temp)
    synced = [
        n for n, c in enumerate(calls) if c["op"] == "sync" and c["path"] == temp and n > last_write
    ]
    assert synced and synced[0] < rename, "the file must be synced before it takes its name"
    directory = str(Path(final).parent)
    assert any(c["op"] == "dirsync" and c["path"] == directory for c in calls[rename + 1 :]), (
        "the directory must be synced after the rename"
    )


def test_v3_answers_1604_only_after_the_file_is_synced_renamed_and_its_directory_synced(
    tmp_path: Path,
) -> None:
    server, hook = hooked_server(tmp_path / "v3")
    try:
        peer = Peer(server.address)
        peer.handshake("ordered")
        content = b"synced before acknowledged\n" * 100
        frame = packet(
            peer.client_id, b"kept.txt", encrypted(peer.aes_key, content), orig_size=len(content)
        )
        peer.send(frame)
        assert isinstance(peer.receive(), FileReceived)
        peer.send(request(900, field255(b"kept.txt"), peer.client_id))
        assert isinstance(peer.receive(), Acknowledged)
        calls = hook.calls()  # read the moment 1604 is in: later calls are not there yet
        _check_commit(calls, f"files/{peer.client_id.hex()}/kept.txt")
        peer.close()
    finally:
        server.stop()


def test_v4_answers_1604_only_after_the_file_is_synced_renamed_and_its_directory_synced(
    tmp_path: Path,
) -> None:
    server, hook = hooked_server(tmp_path / "v4")
    try:
        peer = V4Peer(server.address, "ordered")
        data = bytes(range(256)) * 5000
        before_900: list[int] = []
        peer.send_file("kept.bin", data, before_verdict=lambda: before_900.append(hook.mark()))
        calls = hook.calls()
        final = f"v4/files/{peer.session.client_id.hex()}/kept.bin"
        _check_commit(calls, final)
        assert _index(calls, "rename", final) >= before_900[0], "committed only after 900"
        peer.close()
    finally:
        server.stop()


def test_v4_streamed_files_are_answered_only_after_their_group_is_durable(
    tmp_path: Path,
) -> None:
    """Several files in flight (STREAM): the group's files each synced after their last
    write and renamed, each folder synced once after the renames, all before the first
    answer of the group; one folder sync for the group, not one per file."""
    server, hook = hooked_server(tmp_path / "v4s")
    try:
        peer = V4Peer(server.address, "grouped")
        session = peer.session
        assert session.stream_window
        names = [f"{folder}/f{i}.txt" for folder in ("a", "b") for i in range(4)]
        frames = []
        for number, name in enumerate(names):
            data = name.encode() * (number + 1)
            frames.append(session.begin_stream_file(name, len(data), bytes([number]) * 16))
            frames.append(session.chunk_record(1, data))
            last = number == len(names) - 1
            frames.append(session.commit_if(file_digest(data).digest(), sync_now=last))
        peer.sock.sendall(b"".join(frames))
        calls: list[dict[str, Any]] = []
        verified = 0
        while verified < len(names):
            reply = peer.receive()
            if reply.file_verified:
                if not calls:
                    calls = hook.calls()  # the first answer of the group is in
                verified += 1
        root = f"v4/files/{session.client_id.hex()}"
        for name in names:
            _check_commit(calls, f"{root}/{name}")
        renames = [n for n, c in enumerate(calls) if c["op"] == "rename"]
        for folder in ("a", "b"):
            syncs = [
                n
                for n, c in enumerate(calls)
                if c["op"] == "dirsync" and c["path"] == f"{root}/{folder}" and n > renames[0]
            ]
            assert len(syncs) == 1 and syncs[0] > renames[-1], "one sync per folder per group"
        peer.close()
    finally:
        server.stop()


def test_v4_packed_files_are_answered_only_after_their_group_is_durable(
    tmp_path: Path,
) -> None:
    """Small files in packs (PACK): each pack's files created, synced and renamed, each
    folder synced once after the renames, all before the first 1608 of the group. The
    hook sees a packed file's ``os.open`` but not its ``os.write`` (only file objects'
    writes are steps); the write follows the open at once, on the loop, so the sync
    after the open is the sync after the data."""
    server, hook = hooked_server(tmp_path / "v4p")
    try:
        peer = V4Peer(server.address, "packed")
        session = peer.session
        assert session.pack_files
        names = [f"{folder}/p{i}.txt" for folder in ("a", "b") for i in range(5)]
        entries = [(name.encode(), name.encode() * (n + 1)) for n, name in enumerate(names)]
        frames: list[bytes] = []
        for batch, last in ((entries[:4], False), (entries[4:], True)):
            packed = [(name, file_digest(data).digest(), data) for name, data in batch]
            frames += [bytes(piece) for piece in session.seal_pack(packed, sync_now=last)[1]]
        peer.sock.sendall(b"".join(frames))
        calls: list[dict[str, Any]] = []
        outcomes: list[int | object] = []
        while len(outcomes) < len(names):
            reply = peer.receive()
            assert reply.pack_outcomes is not None
            if not calls:
                calls = hook.calls()  # the first 1608 of the group is in
            outcomes += reply.pack_outcomes
        assert outcomes == [0] * len(names)
        root = f"v4/files/{session.client_id.hex()}"
        renames = [n for n, c in enumerate(calls) if c["op"] == "rename"]
        for name in names:
            rename = _index(calls, "rename", f"{root}/{name}")
            temp = calls[rename]["source"]
            opened = _index(calls, "open", temp)
            synced = [n for n, c in enumerate(calls) if c["op"] == "sync" and c["path"] == temp]
            assert synced and opened < synced[0] < rename, "synced before it takes its name"
        for folder in ("a", "b"):
            syncs = [
                n
                for n, c in enumerate(calls)
                if c["op"] == "dirsync" and c["path"] == f"{root}/{folder}" and n > renames[0]
            ]
            assert len(syncs) == 1 and syncs[0] > renames[-1], "one sync per folder per group"
        peer.close()
    finally:
        server.stop()
