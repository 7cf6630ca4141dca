"""A full disk: the server's data directory on a 4 MiB tmpfs, then a file that does not fit.

One scenario (module fixture) runs once; the tests read what it recorded:

1. store a small file; 2. send a 6 MiB file (more than the free space) with the real
client; 3. look at ``tmp/`` and ``files/`` and probe the server; 4. send a small file
again; 5. restart the server (start-up recovery) and send a small file once more.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eft_client.errors import ExitCode
from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession
from eft_protocol.parser import NEED_DATA, RequestParser, ResponseParser
from eft_protocol.registry import MemoryRegistry
from eft_protocol.wire import ReconnectDenied, ServerError
from tests.hostile.helpers import MiB, Peer, field255, request, same_content
from tests.support.processes import (
    ClientDir,
    ClientRun,
    ServerProcess,
    finish,
    write_random_file,
)

TMPFS_SIZE = "4m"

pytestmark = pytest.mark.skipif(
    shutil.which("mount") is None or os.geteuid() != 0, reason="mounting a tmpfs needs root"
)


@dataclass
class DiskFull:
    data: Path
    small: Path
    big: Path
    client_id: str
    big_run: ClientRun
    server_log: list[dict[str, Any]]
    tmp_after_failure: list[str]
    files_after_failure: list[str]
    probe_answer: object
    small_again: ClientRun
    after_restart: ClientRun
    recovered: list[dict[str, Any]] = field(default_factory=list)
    tmp_after_restart: list[str] = field(default_factory=list)


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskFull]:
    base = tmp_path_factory.mktemp("disk_full")
    data = base / "server" / "data"
    data.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(data)], check=True
    )
    server = ServerProcess(data, base / "server.log", args=("--metrics-port", "0"), hold_port=True)
    try:
        server.start()
        client = ClientDir(base / "clients" / "dora", "dora", server.address)
        small = write_random_file(base / "small.bin", 256 * 1024, seed=1)
        first = client.run([small])
        assert first.returncode == 0, first.stderr
        big = write_random_file(base / "big.bin", 6 * MiB, seed=2)
        big_run = client.run([big], "--retries", "0", timeout=120)
        server_log = server.logs()
        tmp_after = _listing(data / "tmp")
        files_after = _listing(data / "files")
        peer = Peer(server.address)
        peer.send(request(827, field255(b"probe"), bytes(16)))
        probe_answer = peer.receive()
        peer.close()
        again = write_random_file(base / "again.bin", 64 * 1024, seed=3)
        small_again = client.run([again], "--retries", "0", timeout=120)
        server.restart()
        recovered = [r for r in server.logs() if r.get("event") == "recovered"]
        tmp_after_restart = _listing(data / "tmp")
        later = write_random_file(base / "later.bin", 64 * 1024, seed=4)
        after_restart = client.run([later], timeout=120)
        yield DiskFull(
            data,
            small,
            big,
            client.client_id_hex,
            big_run,
            server_log,
            tmp_after,
            files_after,
            probe_answer,
            small_again,
            after_restart,
            recovered,
            tmp_after_restart,
        )
    finally:
        if server.proc is not None:
            server.stop()
        server.release()
        subprocess.run(["umount", str(data)], check=False)


def test_a_full_disk_loses_nothing_stored_and_stores_nothing_partial(disk_full: DiskFull) -> None:
    run = disk_full.big_run
    assert run.returncode != 0, "a file larger than the free space cannot have been stored"
    assert "file_verified" not in run.kinds()
    # One line per failed attempt (the client makes at most four), with why, at error level:
    # the driver and the session once both logged each failure.
    failures = [r for r in disk_full.server_log if r.get("event") == "storage_failed"]
    assert 1 <= len(failures) <= 4, failures
    assert all(r["level"] == "error" and r["detail"] for r in failures)
    stored = disk_full.data / "files" / disk_full.client_id
    assert same_content(stored / "small.bin", disk_full.small), "the stored file changed"
    assert not (stored / "big.bin").exists()
    assert not any(name.endswith(".part") for name in disk_full.files_after_failure)
    assert disk_full.files_after_failure == [f"{disk_full.client_id}/small.bin"]
    # The server still answers, and a restart recovers: leftovers removed, files stored.
    assert isinstance(disk_full.probe_answer, ReconnectDenied)
    assert disk_full.tmp_after_restart == []
    assert disk_full.after_restart.returncode == 0, disk_full.after_restart.stderr
    assert (stored / "later.bin").read_bytes() == (disk_full.big.parent / "later.bin").read_bytes()


def test_a_full_disk_leaves_no_temporary_file_and_the_next_small_file_is_stored(
    disk_full: DiskFull,
) -> None:
    assert disk_full.tmp_after_failure == []
    assert disk_full.small_again.returncode == 0, disk_full.small_again.stderr


def test_a_full_disk_is_answered_1607_until_the_client_gives_up(disk_full: DiskFull) -> None:
    run = disk_full.big_run
    assert not any(r.get("event") == "connection_crashed" for r in disk_full.server_log)
    assert "connection_retry" not in run.kinds()
    assert [e["attempt"] for e in run.events if e["event"] == "server_error"] == [1, 2, 3]
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr


# --- the same failure without a disk: the session alone --------------------------------


def _storage_fails_on_write(packet_size: int) -> list[ss.Effect]:
    """A client sends a 10 000-byte file; the driver's first write fails (disk full)."""
    server = ss.ServerSession(MemoryRegistry())
    parser, responses = RequestParser(), ResponseParser()
    client = ClientSession("dora")
    answered: list[ss.Effect] = []
    failed = False

    def to_server(frames: list[bytes]) -> None:
        nonlocal failed
        for frame in frames:
            parser.receive_data(frame)
            while (event := parser.next_event()) is not NEED_DATA:
                effects = server.handle(event, 0.0)
                if not failed and any(isinstance(e, ss.WriteFile) for e in effects):
                    failed = True
                    effects = server.storage_failed("OSError")
                for effect in effects:
                    if isinstance(effect, ss.Send | ss.Rejected):
                        answered.append(effect)
                        responses.receive_data(effect.response.encode())

    frames = client.start()
    while not client.ready:
        to_server(frames)
        response = responses.next_event()
        assert response is not NEED_DATA
        frames = client.receive(response).send
    answered.clear()
    sender = client.begin_file("big.bin", 10_000, packet_size)
    to_server(sender.feed(bytes(10_000)) + sender.finish())
    return answered


def test_a_storage_failure_mid_attempt_is_answered_once_and_the_rest_is_dropped() -> None:
    answered = _storage_fails_on_write(packet_size=1024)
    assert len(answered) == 1
    assert isinstance(answered[0], ss.Rejected)
    assert answered[0].response == ServerError()


def test_version_4_on_a_full_disk_is_told_so_and_served_again_without_a_restart(
    tmp_path: Path,
) -> None:
    """A real full file system, version 4: the big upload does not fit in the free space
    (statvfs), so its client is told before any data ("no space", 1607 error 8) and exits
    10 (before issue 21 it sent until ENOSPC and exited 8, a path the fault-injection
    tests keep: test_storage_faults.py); a small client on the side is not broken by
    it, nothing partial stays, and the same server stores the next file."""
    data = tmp_path / "server" / "data"
    data.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(data)], check=True
    )
    server = ServerProcess(data, tmp_path / "server.log", args=("--keep-free", "0"))
    try:
        server.start()
        big_client = ClientDir(tmp_path / "big", "big", server.address, protocol=4)
        small_client = ClientDir(tmp_path / "small", "small", server.address, protocol=4)
        warm = write_random_file(tmp_path / "warm.bin", 1000, seed=1)
        assert small_client.run([warm]).returncode == 0
        big = write_random_file(tmp_path / "big.bin", 6 * MiB, seed=2)
        running = big_client.start([big])
        side = small_client.run([write_random_file(tmp_path / "side.bin", 2000, seed=3)])
        big_run = finish(running, timeout=120)
        assert big_run.returncode == ExitCode.NO_ROOM, big_run.stderr
        assert "no space: the file needs 6291456 more bytes" in big_run.stderr
        assert "connection_retry" not in big_run.kinds()
        assert "progress" not in big_run.kinds()  # not a byte of its data was sent
        # The small client either stored its file or was told the disk is full: never
        # an answer that fails authentication (exit 6), as before. Told before its data
        # when it comes while the big upload still holds its room (its promise counts
        # until it is refused): "no space", exit 10.
        told = (0, ExitCode.SERVER_STORAGE, ExitCode.NO_ROOM)
        assert side.returncode in told, side.stderr
        partial = data / "v4" / "partial"
        assert [p for p in partial.rglob("*") if p.is_file()] == []
        later = write_random_file(tmp_path / "later.bin", 64 * 1024, seed=4)
        after = small_client.run([later])
        assert after.returncode == 0, after.stderr
        stored = data / "v4" / "files" / small_client.client_id_hex / "later.bin"
        assert stored.read_bytes() == later.read_bytes()
    finally:
        if server.proc is not None:
            server.stop()
        subprocess.run(["umount", str(data)], check=False)
