"""``eft-lab --servers 3``: three replicas on a PostgreSQL registry and one S3 store (a
SeaweedFS started for the run) behind the real HAProxy, the load clients through it,
Prometheus scraping every replica; briefly. Then the S3 server is started again on the
run's data and its bucket listed: the files are there, none on the replicas' disks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eft_lab.haproxy import find_haproxy
from eft_lab.seaweedfs import SeaweedFS, weed_binary


@pytest.mark.slow
def test_lab_with_three_server_replicas(tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "install Prometheus (Debian package 'prometheus')"
    find_haproxy()  # HAProxyMissing says what to install
    weed_binary()  # says what to install
    summary_path = tmp_path / "summary.json"
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--servers",
            "3",
            "--out",
            str(run),
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
    assert summary["problems"] == []  # every verified file in S3, byte for byte
    where = json.loads((run / "seaweedfs.json").read_text())
    assert summary["logs"]["files"] == where["store"]
    assert where["store"].startswith("s3://")
    checked = summary["verified_on_disk"]["checked"]
    assert checked > 0 and summary["verified_on_disk"]["problems"] == []
    replicas = summary["replicas"]
    assert [row["replica"] for row in replicas] == ["r1", "r2", "r3"]
    for row in replicas:
        # Every connection came through HAProxy, each replica answered its checks.
        assert row["connections"] == row["proxied"], row
        assert row["health_checks"] >= 1, row
    assert sum(row["verified"] for row in replicas) == summary["server"]["verified"] > 0
    # HAProxy spread the sessions: more than one replica stored files in the one bucket.
    assert sum(1 for row in replicas if row["verified"]) >= 2, replicas
    # Prometheus scraped each replica: the per-replica panel has one series each.
    per_replica = [
        p for p in summary["prometheus"]["panels"] if p["panel"].startswith("Connections per")
    ]
    assert per_replica and all(p["series"] == 3 for p in per_replica), per_replica
    # No file on a replica's own disk: they are all in S3.
    on_disk = [p for p in run.glob("server*/data/**/files/*/*") if p.is_file()]
    assert on_disk == []
    _assert_listed_in_s3(Path(where["root"]), where, summary["stored_files"])


def _assert_listed_in_s3(root: Path, where: dict[str, Any], stored: int) -> None:
    """The lab stopped its S3 server: started again on the same data and ports, its
    bucket holds every committed file of both versions under the lab's prefix."""
    bucket, prefix = str(where["store"]).removeprefix("s3://").split("/", 1)
    s3 = SeaweedFS(root, ports=where["ports"]).start()
    try:
        pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
    finally:
        s3.stop()
    files = [k for k in keys if k.startswith((f"{prefix}/files/", f"{prefix}/v4/files/"))]
    assert stored > 0 and len(files) == stored, keys
    assert any(k.startswith(f"{prefix}/files/") for k in files), "version 3's"
    assert any(k.startswith(f"{prefix}/v4/files/") for k in files), "version 4's"
