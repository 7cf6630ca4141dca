"""A broken connection mid-transfer: the client reconnects, resends, and finishes."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

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
