"""``eft-lab --servers 3``: three replicas on a PostgreSQL registry behind the real
HAProxy, the load clients through it, Prometheus scraping every replica; briefly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eft_lab.haproxy import find_haproxy


@pytest.mark.slow
def test_lab_with_three_server_replicas(tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "install Prometheus (Debian package 'prometheus')"
    find_haproxy()  # HAProxyMissing says what to install
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--servers",
            "3",
            "--out",
            str(tmp_path / "run"),
            "--duration",
            "6",
            "--clients",
            "2",
            "--v4-clients",
            "2",
            "--max-size",
            "100000",
            "--prometheus",
            "on",
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["problems"] == []  # every verified file on a replica, byte for byte
    replicas = summary["replicas"]
    assert [row["replica"] for row in replicas] == ["r1", "r2", "r3"]
    for row in replicas:
        # Every connection came through HAProxy, each replica answered its checks.
        assert row["connections"] == row["proxied"], row
        assert row["health_checks"] >= 1, row
    assert sum(row["verified"] for row in replicas) == summary["server"]["verified"] > 0
    # Prometheus scraped each replica: the per-replica panel has one series each.
    per_replica = [
        p for p in summary["prometheus"]["panels"] if p["panel"].startswith("Connections per")
    ]
    assert per_replica and all(p["series"] == 3 for p in per_replica), per_replica
