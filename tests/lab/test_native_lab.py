"""The native lab end to end: server, load clients and a real Prometheus on loopback.

Runs ``eft-lab`` for about 20 seconds with 1-second scrapes, then relies on its own
checks (which this test asserts one by one): every dashboard expression returns data
through Prometheus's HTTP API, Prometheus's count of verified transfers equals the
files on disk, and every file a client counted as verified is there byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from eft_lab.prometheus import dashboard_queries

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
    # Every panel's but the attacks row's (no attacker here: tests/lab/test_attack_lab.py).
    every = sum(
        1 for panel in _panels(json.loads(DASHBOARD.read_text())) for t in panel.get("targets", [])
    )
    expected = len(dashboard_queries(DASHBOARD))
    assert len(panels) == expected > 10
    assert expected < every
    empty = [p for p in panels if p["series"] == 0]
    assert empty == [], f"panels without data: {empty}"

    # The alert rules are loaded, and a healthy lab raises none of them.
    alerts = summary["prometheus"]["alerts"]
    assert set(alerts) == {
        "EftServerDown",
        "EftErrorRatio",
        "EftNoVerifiedTransfers",
        "EftDiskNearlyFull",
        "EftCrcMismatchRatio",
    }
    assert "firing" not in alerts.values()

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


def test_ctrl_c_stops_the_traffic_and_still_makes_the_summary(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the lab's whole process group, as a Ctrl-C does: the
    lab's server, clients and Prometheus must outlive it until the summary is made."""
    assert shutil.which("prometheus"), "install Prometheus (Debian package 'prometheus')"
    run_dir = tmp_path / "run"
    summary_path = tmp_path / "summary.json"
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--out",
            str(run_dir),
            "--duration",
            "0",
            "--clients",
            "1",
            "--v4-clients",
            "1",
            "--rate",
            "5",
            "--max-size",
            "20000",
            "--prometheus",
            "on",
            "--scrape-interval",
            "1",
            "--summary-json",
            str(summary_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a job
    )
    lines: list[str] = []
    assert lab.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(lab.stdout or ()), daemon=True)
    reader.start()
    try:
        # Interrupt once the lab says Prometheus is up and a file has been verified:
        # events, not a clock.
        manifest = run_dir / "clients" / "lab-v3-client-1" / "verified.jsonl"
        wait_until(
            lambda: (
                any(line.startswith("Prometheus on") for line in lines)
                and manifest.exists()
                and manifest.stat().st_size > 0
            ),
            "Prometheus and the first verified file",
            lab,
        )
        os.killpg(lab.pid, signal.SIGINT)
        lab.wait(timeout=240)
        reader.join()
        stdout, stderr = "".join(lines), (lab.stderr.read() if lab.stderr else "")
    finally:
        if lab.poll() is None:
            # Its server, clients and Prometheus run in sessions of their own (Ctrl-C must
            # not reach them): a lab that failed this test must not leave them running.
            for child in psutil.Process(lab.pid).children(recursive=True):
                child.kill()
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    assert "Traceback" not in stderr + stdout, stderr
    summary = json.loads(summary_path.read_text())
    assert summary["prometheus"]["verified_transfers"] == summary["stored_files"] > 0
    assert summary["verified_on_disk"]["checked"] == summary["stored_files"]
    assert lab.returncode in (0, 1), stdout + stderr  # 1: a panel may lack a second scrape


def wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120  # a bound on a hung lab, not a margin on a duration
    while not condition():
        assert proc.poll() is None, f"the lab exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} in 120 s"
        time.sleep(0.05)
