"""500 concurrent clients against one server, with zero failures.

Not 500 processes: ``eft_lab.load_generator`` runs 500 sessions of the real client code
in one asyncio process (one shared RSA key, one config directory and name each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_lab.processes import clean_env
from tests.faults.test_client_killed import file_rows, files_on_disk
from tests.support.processes import ServerProcess

CLIENTS = 500


def run_load_generator(
    server: ServerProcess, workdir: Path, *args: str, timeout: float = 240
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.load_generator",
            "--server",
            server.address,
            "--workdir",
            str(workdir),
            *args,
        ],
        capture_output=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, (
        f"the load generator printed no report (exit {done.returncode}):\n{done.stderr.decode()}"
    )
    report: dict[str, Any] = json.loads(lines[-1])
    assert report["event"] == "report"
    return report


def max_concurrent_connections(records: list[dict[str, Any]]) -> int:
    """From the server's log, in the order its one event loop wrote it."""
    open_now = peak = 0
    for record in records:
        if record.get("event") == "connection_opened":
            open_now += 1
            peak = max(peak, open_now)
        elif record.get("event") == "connection_closed":
            open_now -= 1
    return peak


@pytest.mark.slow
def test_500_concurrent_clients_all_succeed(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    workdir = tmp_path / "load"
    report = run_load_generator(
        server, workdir, "--clients", str(CLIENTS), "--min-size", "0", "--max-size", "65536"
    )
    assert report["errors"] == []
    assert (report["successes"], report["failures"]) == (CLIENTS, 0)
    assert report["files_verified"] == CLIENTS
    assert report["latency_seconds"]["max"] > 0

    logs = server.logs()
    assert not [r for r in logs if r.get("event") in ("connection_crashed", "request_rejected")]
    assert max_concurrent_connections(logs) >= 100, "the clients did not overlap"

    ids = set()
    for client in report["per_client"]:
        assert client["verified"] == client["files"]
        (name,) = client["files"]
        source = workdir / client["name"] / "files" / name
        stored = server.data_dir / "files" / client["client_id"] / name
        assert stored.read_bytes() == source.read_bytes(), name
        ids.add(client["client_id"])
    assert len(ids) == CLIENTS
    server.stop()
    assert file_rows(server.data_dir) == files_on_disk(server.data_dir)
    assert len(files_on_disk(server.data_dir)) == CLIENTS
