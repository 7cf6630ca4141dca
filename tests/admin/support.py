"""Helpers for the operator tests: eft-admin as a process, metrics, client runs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from eft_lab.processes import clean_env
from tests.support.processes import ClientDir, ClientRun, ServerProcess


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eft_admin", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def admin_json(data_dir: Path, *args: str) -> Any:
    done = admin(data_dir, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def metric(server: ServerProcess, name: str, labels: str) -> float:
    """A sample of the server's /metrics, e.g. ``metric(s, "eft_x_total", 'reason="a"')``."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
    raise AssertionError(f"no {name}{{{labels}}}")


def send(client: ClientDir, protocol: int, *files: Path) -> ClientRun:
    client.protocol = protocol
    return client.run(list(files), "--retry-for", "0")


def refusals(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.logs() if r.get("event") == "registration_policy_refused"]
