"""The native lab end to end: server, load clients and a real Prometheus on loopback.

Runs ``eft-lab`` for about 20 seconds with 1-second scrapes, then relies on its own
checks (which this test asserts one by one): every dashboard expression returns data
through Prometheus's HTTP API, Prometheus's count of verified transfers equals the
files on disk, and every file a client counted as verified is there byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring/grafana/dashboards/eft-lab.json"


@pytest.mark.slow
def test_native_lab_with_prometheus(tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "install Prometheus (Debian package 'prometheus')"
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--out",
            str(tmp_path / "run"),
            "--duration",
            "20",
            "--clients",
            "3",
            "--rate",
            "3",
            "--corrupt-rate",
            "0.2",
            "--max-size",
            "300000",
            "--prometheus",
            "on",
            "--scrape-interval",
            "1",
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
    assert summary["problems"] == []

    panels = summary["prometheus"]["panels"]
    expected = sum(
        1 for panel in _panels(json.loads(DASHBOARD.read_text())) for t in panel.get("targets", [])
    )
    assert len(panels) == expected > 10
    empty = [p for p in panels if p["series"] == 0]
    assert empty == [], f"panels without data: {empty}"

    verified = summary["prometheus"]["verified_transfers"]
    assert verified == summary["stored_files"] > 20
    assert summary["verified_on_disk"]["checked"] == summary["stored_files"]
    assert summary["server"]["crc_mismatches"] > 0, "the retry paths did not run"
    assert all(row["verified"] > 0 for row in summary["clients"])


def _panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_native_lab_runs_cpp_clients_beside_python_ones(tmp_path: Path) -> None:
    binary = Path(__file__).resolve().parents[2] / "client/cpp/build/eft-client-cpp"
    assert binary.exists(), "build the C++ client first (make cpp)"
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--out",
            str(tmp_path / "run"),
            "--duration",
            "6",
            "--clients",
            "1",
            "--v4-clients",
            "0",
            "--cpp-clients",
            "1",
            "--rate",
            "3",
            "--max-size",
            "100000",
            "--prometheus",
            "off",
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(summary_path.read_text())
    kinds = {row["kind"]: row for row in summary["clients"]}
    assert kinds["c++"]["verified"] > 0
    assert kinds["py v3"]["verified"] > 0
    assert summary["verified_on_disk"]["checked"] == summary["stored_files"]
