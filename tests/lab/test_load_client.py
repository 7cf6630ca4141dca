"""``eft-lab-client`` restarted in the same directory, and its health check.

A container's client restarts in its own directory (``compose restart``, ``restart:
unless-stopped``): it must carry on as the same user, and the image's HEALTHCHECK
(``eft-lab-client --health-check``) must say whether it can transfer, not only whether its
metrics answer. Real server on 127.0.0.1 port 0; each run sends one file (``--duration``
ends the loop after the first).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eft_lab.load_client import UNHEALTHY_AFTER, Health, health_problem
from eft_lab.processes import clean_env
from tests.support.processes import ServerProcess


def load_client(workdir: Path, server: ServerProcess, protocol: int, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.load_client",
            "--server",
            f"127.0.0.1:{server.port}",
            "--workdir",
            str(workdir),
            "--protocol",
            str(protocol),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--corrupt-rate",
            "0",
            "--rate",
            "0",
            "--duration",
            "0.001",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def verified(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "verified.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def health_check(workdir: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "eft_lab.load_client", "--health-check", "--workdir", str(workdir)],
        capture_output=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )
    return done.returncode


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_restarted_load_client_carries_on_as_the_same_user(
    server: ServerProcess, tmp_path: Path, protocol: int
) -> None:
    workdir = tmp_path / "work"
    load_client(workdir, server, protocol)
    first = verified(workdir)
    assert len(first) >= 1
    assert health_check(workdir) == 0

    # The same directory, no --name: a container's restart.
    out = load_client(workdir, server, protocol)
    assert "transfer_failed" not in out, out
    again = verified(workdir)[len(first) :]
    assert len(again) >= 1, f"the restarted client verified nothing:\n{out}"
    assert {r["client_id"] for r in first + again} == {first[0]["client_id"]}, (
        "the restarted client registered as someone else"
    )
    assert health_check(workdir) == 0


def test_health_check_fails_when_the_client_cannot_transfer(
    server: ServerProcess, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert health_check(workdir) != 0, "healthy before any file"
    load_client(workdir, server, 4)
    assert health_check(workdir) == 0
    # me4.info is another name's identity: every file fails. The earlier run's good
    # health must not speak for this run.
    out = load_client(workdir, server, 4, "--name", "someone-else")
    assert "transfer_failed" in out
    assert health_check(workdir) != 0


def test_health_turns_bad_after_failures_in_a_row_and_recovers(tmp_path: Path) -> None:
    health = Health(tmp_path / "health.json")
    health.record("verified")
    assert health_problem(tmp_path) is None
    for _ in range(UNHEALTHY_AFTER - 1):
        health.record("failed")
    assert health_problem(tmp_path) is None, "a transient failure is not yet unhealthy"
    health.record("failed")
    assert health_problem(tmp_path) == f"the last {UNHEALTHY_AFTER} files failed"
    health.record("gave_up")  # damaged on purpose: the client itself works
    assert health_problem(tmp_path) is None
