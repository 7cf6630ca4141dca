"""Several files in flight with real processes: a thousand small files in one session,
a cut in the middle of the window then the rest, and a server without the feature."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hostile.helpers import wait_for_log
from tests.support.processes import ClientDir, ProxyProcess, ServerProcess, read_json_lines


def _v4(client_factory: Callable[..., ClientDir], name: str, address: str) -> ClientDir:
    client = client_factory(name, address)
    client.protocol = 4
    return client


def _small_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(count):
        path = folder / f"f{i:04}.txt"
        path.write_bytes(f"file {i}\n".encode() * (1 + i % 200))
        files.append(path)
    return files


def _own(server: ServerProcess, client: ClientDir) -> Path:
    return server.data_dir / "v4" / "files" / client.client_id_hex


def test_a_thousand_small_files_in_one_session(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "mia", server.address)
    files = _small_files(tmp_path / "many", 1000)
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    assert run.kinds().count("connected") == 1
    assert run.kinds().count("file_verified") == 1000
    for path in files:
        assert (_own(server, client) / path.name).read_bytes() == path.read_bytes()
    # One line for the session's streamed files, not one a file (issue 25).
    assert not [r for r in server.logs() if r.get("outcome") == "verified"]
    streamed = wait_for_log(server, "files_streamed")  # logged as the connection ends
    assert (streamed["files"], streamed["bytes"]) == (
        1000,
        sum(path.stat().st_size for path in files),
    )
    assert not any((server.data_dir / "v4" / "partial").glob("*/*"))


def test_a_cut_in_the_middle_of_the_window_then_the_rest(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    files = _small_files(tmp_path / "cut", 600)
    total = sum(path.stat().st_size for path in files)
    proxy = proxy_factory(server.address, "never", "--cut-after", str(total // 2))
    client = _v4(client_factory, "noa", proxy.address)
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    assert run.kinds().count("connected") == 2  # cut once, then the rest
    verified = [e["file"] for e in run.events if e["event"] == "file_verified"]
    assert sorted(set(verified)) == sorted(path.name for path in files)
    for path in files:
        assert (_own(server, client) / path.name).read_bytes() == path.read_bytes()
    # Files cut before their answer are sent again whole; nothing is left half-made.
    assert not any((server.data_dir / "v4" / "partial").glob("*/*"))
    closed = [r for r in read_json_lines(proxy.log_path) if r.get("event") == "closed"]
    assert closed


def test_a_file_over_one_record_still_goes_alone_and_resumable(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "ola", server.address)
    small = _small_files(tmp_path / "mixed", 5)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: two records
    run = client.run([*small, big])
    assert run.returncode == 0, run.stderr
    assert (_own(server, client) / "big.bin").read_bytes() == big.read_bytes()
    started = [e for e in run.events if e["event"] == "file_started" and e["file"] == "big.bin"]
    assert started and started[0].get("packets") == 2  # the one-at-a-time attempt's fields


def test_an_empty_folder_blocked_by_a_file_is_refused_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    import pytest  # noqa: PLC0415

    from eft_protocol.v4 import client as v4c  # noqa: PLC0415
    from eft_protocol.v4.file_digest import file_digest  # noqa: PLC0415
    from tests.support.fs_faults import V4Peer  # noqa: PLC0415

    peer = V4Peer(server.address, "pia")
    peer.send_file("taken", b"a file")
    session = peer.session
    peer.sock.sendall(session.begin_folder("taken"))
    with pytest.raises(v4c.RefusedByServer) as refused:
        peer.receive()
    assert refused.value.error == 2 and "taken" in str(refused.value)
    session._unstarted.clear()  # the client gave up on that folder: on with the rest
    session._folders = 0
    peer.sock.sendall(session.begin_folder("made/here"))
    assert peer.receive().file_verified
    frames = [
        session.begin_stream_file("made/here/f.txt", 2, bytes(16)),
        session.chunk_record(1, b"ok"),
    ]
    frames.append(session.commit_if(file_digest(b"ok").digest(), sync_now=True))
    peer.sock.sendall(b"".join(frames))
    replies = [peer.receive() for _ in range(3)]
    assert replies[-1].file_verified
    root = server.data_dir / "v4" / "files" / session.client_id.hex()
    assert (root / "made" / "here" / "f.txt").read_bytes() == b"ok"
    peer.close()
