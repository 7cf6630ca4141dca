"""``make bench`` end to end on tiny sizes: every part runs and reports both versions.

Nothing here is timed (the machines are shared): the figures are only checked to exist
and to be consistent with each other. The comparison rows appear when OpenSSH and rsync
are installed, and the report says so when they are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_bench_reports_versions_3_and_4(tmp_path: Path) -> None:
    results = tmp_path / "not" / "made" / "yet"  # the bench makes it (the profiles first)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "EFT_"))},
        "BENCH_RUNS": "1",
        "BENCH_SIZE_MIB": "8",
        "BENCH_BIG_MIB": "12",
        # 16 sessions: the server's CPU over them is several 10 ms ticks (/proc counts
        # whole ticks), so a positive figure does not hang on the machine's speed.
        "BENCH_CLIENTS": "16",
        "BENCH_HANDSHAKES": "100",
        "BENCH_PARTS": "single,big,load,handshake,profile",
        "BENCH_DIR": str(tmp_path / "work"),
        "BENCH_RESULTS": str(results),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((results / "bench.json").read_text())
    rows = report["single"]["rows"]
    eft = {name: row for name, row in rows.items() if name.startswith("eft")}
    assert {name.split(" (")[0] for name in eft} == {"eft v3", "eft v4"}
    for row in eft.values():
        assert row["mb_per_s"] > 0
        assert 0 <= row["server_system_s_per_gib"] <= row["server_cpu_s_per_gib"]
        assert 0 <= row["server_loop_cpu_s_per_gib"] <= row["server_cpu_s_per_gib"]
        assert 40 < row["server_peak_rss_mib"] < 200
        # The second instrument: the file alone, from the client's own events, is part of
        # the command, and the phases around it add up to the command.
        transfer, command = row["transfer_seconds"]["median"], row["seconds"]["median"]
        assert 0 < transfer < command
        assert sum(row["phases_s"].values()) == pytest.approx(command, abs=0.01)
        assert row["client_cpu_s_per_gib"] > 0
    if report["single"]["ssh_missing"] is None:
        scp = rows["scp (default cipher)"]
        assert scp["ratio_to_scp"] == scp["ratio_to_scp_transfer"] == 1.0
        assert all(row["ratio_to_scp_transfer"] > 0 for row in eft.values())
        for tool in ("sftp (default cipher)", "rsync over ssh"):
            assert 0 < rows[tool]["transfer_seconds"]["median"] < rows[tool]["seconds"]["median"]
    else:
        assert "scp/sftp/rsync skipped" in (results / "bench.md").read_text()
    if report["single"]["wormhole_missing"] is None:
        assert rows["magic-wormhole (local mailbox and relay)"]["mb_per_s"] > 0
    else:
        assert "magic-wormhole skipped" in (results / "bench.md").read_text()
    assert {row["protocol"] for row in report["big_file"].values()} == {3, 4}
    for version in ("v3", "v4"):
        load = report["concurrency"][version]["16"]
        assert load["failures"] == 0, load["errors"]
        assert load["sessions_per_s"] > 0
        assert load["server_cpu_ms_per_session"] > 0
        assert 0 <= load["server_loop_cpu_ms_per_session"] <= load["server_cpu_ms_per_session"]
        assert load["load_cpu_s"] > 0 and load["load_cpu_s_total"] >= load["load_cpu_s"]
    cookie = "message 1 under load (cookie reply)"
    floors = ("floor: the event loop alone", "floor: the Noise responder alone")
    for kind in ("message 1 answered", "full handshake and log-in", cookie, *floors):
        handshake = report["handshake"][kind]
        # /proc counts whole 10 ms ticks: a batch of 100 cheap connections (the floors',
        # the cookie replies') can use less than one, and read 0.
        assert 0 <= handshake["server_cpu_ms_min"] <= handshake["server_cpu_ms"]
        assert handshake["client_cpu_ms"] > 0
    # The dearest kind, ~0.6 ms a connection: several ticks a batch on any machine.
    assert report["handshake"]["full handshake and log-in"]["server_cpu_ms_min"] > 0
    flood = report["handshake"]["log-in under a message-1 flood"]
    assert 0 < flood["idle"]["p50_ms"] <= flood["idle"]["p90_ms"]
    assert 0 < flood["flood"]["p50_ms"] <= flood["flood"]["p90_ms"]
    for kind in ("message-1 flood", "idle-socket flood", "record-buffer flood"):
        upload = report["handshake"]["upload under floods"][kind]
        assert upload["idle_s"]["min"] > 0 and upload["flood_s"]["min"] > 0
        assert upload["server_peak_rss_mib"]["after"] > 0
        assert set(upload["phases_s"]) == {"start_up", "log_in", "file"}
        assert upload["phases_s"]["start_up"]["flood"] > 0
        assert upload["server_cpu_ms_per_flood_connection"]["min"] >= 0
    text = (results / "bench.md").read_text()
    assert "## Targets" in text and "eft v4" in text
    assert "v4 server CPU per full handshake" in text
    assert "the floor, measured beside it: the Noise XX responder alone on uvloop" in text
    assert (results / "bench.png").stat().st_size > 10_000
    if report["profile"].get("skipped") is None:
        assert {"v3 server", "v3 client", "v4 server", "v4 client"} <= set(report["profile"])
    assert not (ROOT / "bench" / "results" / "bench.json").samefile(results / "bench.json")


def test_the_many_files_part_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """``BENCH_PARTS=many-files`` alone, 20 files, no stdlib, two rounds (the second
    logs in with the first's key): the section is reported (with the ssh tools' rows
    when OpenSSH is installed); nothing is timed here."""
    results = tmp_path / "results"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "EFT_"))},
        "BENCH_RUNS": "2",
        "BENCH_PARTS": "many-files",
        "BENCH_MANY_FILES": "20",
        "BENCH_MANY_STDLIB": "0",
        "BENCH_DIR": str(tmp_path / "work"),
        "BENCH_RESULTS": str(results),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## Many files" in done.stdout
    report = json.loads(next(results.glob("*.json")).read_text())
    (figures,) = report["many_files"]["sets"]
    assert figures["files"] == 20 and "eft v4" in figures["rows"]
    assert len(figures["seconds_per_round"]["eft v4"]) == 2
    assert set(figures["eft_cpu_per_1000_files"]) == {"server", "client"}
