"""``make soak``: the native lab for a few minutes, the server's RSS sampled: is it flat?

Runs ``eft-lab`` (4 version-3 and 4 version-4 Python clients, 4 files/s each, C++
clients too when built; ``SOAK_SECONDS``, default 900: the two one-time steps below land
3 to 4 minutes in, so the measured second half starts after them) and scrapes the server's
metrics endpoint every ``SOAK_INTERVAL`` seconds: ``process_resident_memory_bytes``
and the files verified and stored. The first half of the run is warm-up
(``SOAK_WARM_UP`` seconds to choose another): the bounded caches fill up, the registry's
LRU cache, SQLite's page caches, the allocator's arenas, and version 4's pool of 1 MiB
record buffers, which keeps as many buffers as records were ever received at once
(at most ``--record-buffers``), and the interpreter's table of interned strings, which
doubles once after some 6,000 files (``pathlib`` interns path components; docs/PERFORMANCE.md,
"Memory over time"). Over the second half it fits a line to RSS over time and over
files stored. Flat means under 50 bytes per stored file (before the registry
moved to disk it was about 700).

The server runs with ``memory_probe/sitecustomize.py`` on its path (``SOAK_PROBE=0``
to leave it out), which samples its allocators from inside, the record-buffer pool
among them: the report gives the slope with and without that pool's bytes, since a
new buffer made at a moment of overlap is a 1 MiB step that a short run cannot tell
from growth. The report goes to ``bench/results/soak.json`` (the probe's samples to
``soak-probe.jsonl``), where ``make bench`` picks it up.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from eft_lab.cpp_clients import find_cpp_client
from eft_lab.scrape import scrape, total

from .common import RESULTS

FLAT_BYTES_PER_FILE = 50.0
#: Its sitecustomize samples the server's allocators from inside (``SOAK_PROBE=0``: not).
PROBE_DIRECTORY = Path(__file__).resolve().parent / "memory_probe"
PROBE_RESULTS = RESULTS / "soak-probe.jsonl"
MiB = 1 << 20


def _env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def server_pid(lab: int) -> int | None:
    """The lab's server process (a child of eft-lab)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(lab).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "eft_server" in child.cmdline():
                    return child.pid
    return None


def rss_parts(pid: int | None) -> dict[str, float]:
    """Resident memory by kind (/proc/PID/status): anonymous (the heaps), file-backed
    (code and libraries, paged in as code paths are first run) and shared memory
    (SQLite's WAL index)."""
    parts: dict[str, float] = {}
    if pid is None:
        return parts
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                parts[key] = int(value.split()[0]) * 1024
    return parts


def record_buffers(probe: Path | None) -> dict[str, float]:
    """Bytes in version 4's record-buffer pool, from the probe's latest sample (none
    before the server has made its pool)."""
    if probe is None:
        return {}
    with contextlib.suppress(OSError), probe.open("rb") as lines:
        lines.seek(max(0, probe.stat().st_size - 65536))
        for raw in reversed(lines.read().splitlines()):
            with contextlib.suppress(ValueError):
                last = json.loads(raw)
                if "record_buffers_made" in last:
                    made = last["record_buffers_made"]
                    return {"record_buffers": made * last["record_buffer_bytes"]}
    return {"record_buffers": 0.0}


def summarise(samples: list[dict[str, float]], warm_up: float) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= warm_up] or samples
    times = [s["t"] for s in after]
    rss = [s["rss"] for s in after]
    files = [s["files"] for s in after]
    per_second = slope(times, rss)
    per_file = slope(files, rss)
    by_kind = {
        kind: round(slope(files, [s[kind] for s in after]), 1)
        for kind in ("RssAnon", "RssFile", "RssShmem")
        if all(kind in s for s in after)
    }
    pool: dict[str, Any] = {}
    if all("record_buffers" in s for s in samples):
        less_pool = [s["rss"] - s["record_buffers"] for s in after]
        pool = {
            "record_buffers_after_warm_up_mib": round(after[0]["record_buffers"] / MiB, 2),
            "record_buffers_end_mib": round(samples[-1]["record_buffers"] / MiB, 2),
            "bytes_per_stored_file_less_record_buffers": round(slope(files, less_pool), 1),
        }
    return {
        "seconds": round(samples[-1]["t"], 1),
        "warm_up_s": warm_up,
        "samples": len(samples),
        "rss_start_mib": round(samples[0]["rss"] / MiB, 2),
        "rss_after_warm_up_mib": round(after[0]["rss"] / MiB, 2),
        "rss_end_mib": round(samples[-1]["rss"] / MiB, 2),
        "rss_peak_mib": round(max(s["rss"] for s in samples) / MiB, 2),
        "files_stored": int(samples[-1]["files"]),
        "files_stored_after_warm_up": int(files[-1] - files[0]),
        "slope_kib_per_min": round(per_second * 60 / 1024, 2),
        "bytes_per_stored_file": round(per_file, 1),
        "bytes_per_stored_file_by_kind": by_kind,
        **pool,
        "flat": per_file < FLAT_BYTES_PER_FILE,
    }


def main() -> int:
    seconds = _env("SOAK_SECONDS", 900)
    interval = _env("SOAK_INTERVAL", 5)
    warm_up = _env("SOAK_WARM_UP", seconds / 2)
    cpp = find_cpp_client() is not None
    with tempfile.TemporaryDirectory(prefix="eft-soak-") as out:
        command = [
            str(Path(sys.executable).with_name("eft-lab")),
            "--clients", "4", "--v4-clients", "4", "--cpp-clients", "2" if cpp else "0",
            "--rate", "4", "--max-size", "65536", "--duration", str(seconds),
            "--prometheus", "off", "--out", str(Path(out) / "lab"),
        ]  # fmt: skip
        print(f"soak: {' '.join(command[1:])}", file=sys.stderr)
        env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
        probe = None if os.environ.get("SOAK_PROBE", "1") == "0" else PROBE_RESULTS
        if probe is not None:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.unlink(missing_ok=True)
            paths = [str(PROBE_DIRECTORY), env.get("PYTHONPATH", "")]
            env.update(PYTHONPATH=os.pathsep.join(filter(None, paths)), SOAK_PROBE_FILE=str(probe))
            env.setdefault("SOAK_PROBE_INTERVAL", str(interval))
        lab = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert lab.stdout is not None
        port: int | None = None
        for line in lab.stdout:
            found = re.search(r"metrics on 127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        if port is None:
            lab.wait()
            print("soak: the lab did not start its server", file=sys.stderr)
            return 1
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(lab.stdout or []), daemon=True)
        reader.start()
        started = time.monotonic()
        pid = server_pid(lab.pid)
        samples: list[dict[str, float]] = []
        while lab.poll() is None and time.monotonic() - started < seconds:
            values = scrape(port)
            rss = total(values, "process_resident_memory_bytes")
            if rss:
                files = total(values, "eft_transfers_total", outcome="verified")
                now = time.monotonic() - started
                sample = {"t": now, "rss": rss, "files": files, **rss_parts(pid)}
                sample.update(record_buffers(probe))
                samples.append(sample)
            time.sleep(interval)
        code = lab.wait()
        reader.join(5)
    if len(samples) < 3:
        print(f"soak: only {len(samples)} samples (lab exit {code})", file=sys.stderr)
        print("".join(output[-40:]), file=sys.stderr)
        return 1
    report = summarise(samples, warm_up)
    report["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report["clients"] = {"v3": 4, "v4": 4, "cpp": 2 if cpp else 0, "files_per_s_each": 4}
    report["lab_exit_code"] = code
    report["load_average_1_5_15"] = [round(load, 2) for load in os.getloadavg()]
    columns = ["t", "rss", "files", "RssAnon", "RssFile", "RssShmem", "record_buffers"]
    report["rss_samples_columns"] = [c for c in columns if all(c in s for s in samples)]
    report["rss_samples"] = [
        [round(s["t"], 1)] + [int(s[c]) for c in report["rss_samples_columns"][1:]] for s in samples
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"soak: {report['seconds'] / 60:.1f} min, {report['files_stored']:,} files stored; "
        f"RSS {report['rss_start_mib']} -> {report['rss_end_mib']} MiB; after warm-up "
        f"{report['slope_kib_per_min']} KiB/min, {report['bytes_per_stored_file']} B/file "
        f"({report['bytes_per_stored_file_by_kind']}"
        + (
            f"; less the record-buffer pool, {pool} B/file"
            if (pool := report.get("bytes_per_stored_file_less_record_buffers")) is not None
            else ""
        )
        + "): "
        f"{'flat' if report['flat'] else 'NOT flat'} (written to {RESULTS / 'soak.json'})"
    )
    return 0 if code == 0 else code


if __name__ == "__main__":
    sys.exit(main())
