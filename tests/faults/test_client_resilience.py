"""A broken connection mid-transfer: the client reconnects, resends, and finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from tests.hostile.helpers import wait_until
from tests.support.processes import (
    ClientDir,
    ProxyProcess,
    ServerProcess,
    finish,
    paused,
    write_random_file,
)

MiB = 1 << 20


def test_a_connection_cut_mid_transfer_is_retried_on_a_new_connection(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    proxy = proxy_factory(server.address, "never", "--cut-after", str(MiB))
    client = client_factory("ruth", proxy.address)
    source = write_random_file(tmp_path / "cut.bin", 4 * MiB, seed=11)
    run = client.run([source], "--packet-size", "16384")
    assert run.returncode == 0, run.stderr
    retries = [e for e in run.events if e["event"] == "connection_retry"]
    assert len(retries) == 1 and retries[0]["retry"] == 1
    assert run.kinds().count("connected") == 2
    assert server.stored(client.client_id_hex, "cut.bin").read_bytes() == source.read_bytes()
    # The server notices the cut connection in its own time (maybe after the second
    # connection has finished): wait for that event, then compare outcomes in any order.
    outcomes = wait_until(lambda: _transfer_outcomes(server, 3), "three transfer outcomes")
    assert sorted(outcomes) == ["aborted", "received", "verified"]
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_the_server_killed_mid_transfer_and_restarted(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = client_factory("sam", server.address)
    source = write_random_file(tmp_path / "survivor.bin", 40 * MiB, seed=12)
    assert client.run([write_random_file(tmp_path / "warmup", 10)]).returncode == 0
    proc = client.start([source], "--packet-size", "4096", "--retries", "6")
    tmp_dir = server.data_dir / "tmp"
    wait_until(lambda: any(tmp_dir.iterdir()) or proc.poll() is not None, "the upload")
    # The client is paused while the server is killed and restarted, so the kill lands
    # mid-transfer however fast the machine is.
    with paused(proc):
        assert any(tmp_dir.iterdir()), "the upload was over before the kill"
        server.restart(signal.SIGKILL)
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    assert "connection_retry" in run.kinds()
    stored = server.stored(client.client_id_hex, "survivor.bin")
    assert stored.read_bytes() == source.read_bytes()
    assert list(tmp_dir.iterdir()) == []
    recovered = [r for r in server.logs() if r.get("event") == "recovered"]
    assert recovered and recovered[0]["orphaned_temporary_files"] == 1


def _transfer_outcomes(server: ServerProcess, count: int) -> list[str] | None:
    outcomes = [r["outcome"] for r in server.logs() if r.get("event") == "transfer"]
    return outcomes if len(outcomes) >= count else None


@pytest.mark.parametrize("protocol", [3, 4], ids=["v3", "v4"])
def test_a_server_down_for_many_reconnect_attempts_is_waited_for(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path, protocol: int
) -> None:
    """Killed mid-upload and started again only after the client has been refused four
    times (about 4 s: more than the old three retries, 2.5 s, could wait): the upload
    finishes. No clock decides it: the server comes back when the client says so."""
    client = client_factory(f"patient{protocol}", server.address)
    client.protocol = protocol
    source = write_random_file(tmp_path / f"patient{protocol}.bin", 8 * MiB, seed=30 + protocol)
    assert client.run([write_random_file(tmp_path / "warmup", 10)]).returncode == 0
    proc = client.start([source], "--packet-size", "4096")
    events = _EventReader(proc)
    wait_until(lambda: events.seen("file_started") or proc.poll() is not None, "the upload")
    with paused(proc):
        assert proc.poll() is None, "the upload was over before the kill"
        server.stop(signal.SIGKILL)
    wait_until(
        lambda: len(events.of("connection_retry")) >= 4 or proc.poll() is not None,
        "four reconnect attempts",
    )
    assert proc.poll() is None, f"the client gave up: {events.lines[-3:]}"
    server.start()  # on the port it holds
    assert proc.wait(120) == 0, events.lines[-5:]
    retries = events.of("connection_retry")
    assert all(r["give_up_in"] > 0 for r in retries) and retries[0]["give_up_in"] == 60.0
    stored = [p for p in server.data_dir.rglob(source.name) if p.is_file()]
    assert [p.read_bytes() == source.read_bytes() for p in stored] == [True]


class _EventReader:
    """The client's --json events, read as they come (a thread drains its stdout)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[dict[str, object]] = []
        assert proc.stdout is not None
        stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._thread.start()

    def _read(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            if raw.startswith(b"{"):
                self.lines.append(json.loads(raw))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [dict(line) for line in list(self.lines) if line.get("event") == kind]

    def seen(self, kind: str) -> bool:
        return bool(self.of(kind))
