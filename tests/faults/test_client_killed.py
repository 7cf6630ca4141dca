"""A client killed or frozen mid-transfer: the server frees its session, keeps nothing.

The server runs with ``--max-sessions-per-client 1``: the same client running again
can only get in if the server really let go of the dead session.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.helpers import (
    Metrics,
    MiB,
    part_files,
    same_content,
    wait_for_log,
    wait_until,
)
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def file_rows(data_dir: Path) -> set[tuple[str, str]]:
    """(client id hex, file name) of every row of the registry's ``files`` table."""
    uri = f"file:{data_dir / 'eft.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return {
            (bytes(cid).hex(), name) for cid, name in db.execute("SELECT ID, FileName FROM files")
        }


def files_on_disk(data_dir: Path) -> set[tuple[str, str]]:
    return {(p.parent.name, p.name) for p in (data_dir / "files").glob("*/*") if p.is_file()}


def _upload_under_way(server: ServerProcess, proc: subprocess.Popen[bytes]) -> None:
    """Wait for the upload to begin, then freeze the client (SIGSTOP) in the middle of it,
    so what the test does next happens mid-transfer however fast the machine is."""
    wait_until(lambda: part_files(server.data_dir) or proc.poll() is not None, "the upload")
    os.kill(proc.pid, signal.SIGSTOP)
    assert part_files(server.data_dir), "the upload ended too soon"


@pytest.mark.parametrize(
    ("how", "timeout_kinds"),
    [("SIGKILL", 0), ("SIGSTOP", 1)],
    ids=["killed", "frozen"],
)
def test_a_client_gone_mid_transfer_leaves_nothing_and_its_session_is_freed(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
    how: str,
    timeout_kinds: int,
) -> None:
    server = server_factory(
        "--metrics-port",
        "0",
        "--max-sessions-per-client",
        "1",
        "--read-timeout",
        "1",
        "--idle-timeout",
        "2",
    )
    client = client_factory("ghost", server.address)
    warmup = write_random_file(tmp_path / "warmup.bin", 1000, seed=40)
    assert client.run([warmup]).returncode == 0
    metrics = Metrics(server)
    source = write_random_file(tmp_path / "interrupted.bin", 12 * MiB, seed=41)
    proc = client.start([source], "--packet-size", "4096")
    _upload_under_way(server, proc)
    if how == "SIGKILL":
        proc.kill()  # the kernel closes its socket: the server sees the connection end
    # else: left frozen; nothing more arrives, nothing is closed

    aborted = wait_for_log(server, "transfer", outcome="aborted")
    assert aborted["client_id"] == client.client_id_hex
    wait_for_log(server, "connection_closed", connection=aborted["connection"])
    if how == "SIGSTOP":
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
    proc.wait()
    assert metrics.delta("eft_transfers_total", outcome="aborted") == 1
    assert metrics.delta("eft_connection_timeouts_total") == timeout_kinds
    assert part_files(server.data_dir) == []
    assert not server.stored(client.client_id_hex, "interrupted.bin").exists()
    assert (client.client_id_hex, "interrupted.bin") not in file_rows(server.data_dir)

    # The same client, with the one session its id may have, sends the file again.
    run = client.run([source], "--packet-size", "65536")
    assert run.returncode == 0, run.stderr
    assert "reconnected" in run.kinds()
    assert same_content(server.stored(client.client_id_hex, "interrupted.bin"), source)

    # After a restart the registry lists exactly the files on disk.
    server.restart()
    assert file_rows(server.data_dir) == files_on_disk(server.data_dir)
    assert files_on_disk(server.data_dir) == {
        (client.client_id_hex, "warmup.bin"),
        (client.client_id_hex, "interrupted.bin"),
    }
