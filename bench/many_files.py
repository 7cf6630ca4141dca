"""The bench's many-files part: a folder of many small files, sent by eft (version 4,
several files in flight) beside ``rsync -a`` over ssh, ``rsync -a --fsync``, ``scp -r``,
``sftp put -r`` and ``tar c | ssh 'tar x'`` against the bench's throwaway sshd.

Two sets: (a) ``BENCH_MANY_FILES`` files (default 10,000) of 1-64 KiB; (b) this
machine's Python standard library (copied into the work directory first). Rounds are
interleaved (every tool once per round, fresh destination each time); files/s and MB/s
are medians over the rounds, and each eft figure is also a ratio to each other tool in
the same round. Run on the work directory (``BENCH_DIR``, RAM-backed by default) and,
with ``BENCH_DISK_DIR``, on a real disk too: eft syncs what it stores, rsync and tar do
not (``rsync --fsync`` does). The eft server's RSS is read before and after.

``python -m bench.many_files`` runs it alone (``BENCH_QUICK=1``: 1,000 files, 1 round;
``BENCH_MANY_STDLIB=0``: the first set only).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import sshd
from .common import CpuTimes, Settings, bench_env, median
from .eft import EftServer, client_command

#: The client's record of a folder's verified files (``eft_client.folders``).
VERIFIED_LOG = "verified-v4.log"

KiB = 1024


def make_small_files(folder: Path, count: int, seed: int = 25) -> Path:
    """``count`` files of 1-64 KiB of random bytes, 100 to a sub-folder."""
    rng = random.Random(seed)
    shutil.rmtree(folder, ignore_errors=True)
    for number in range(count):
        sub = folder / f"d{number // 100:03}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{number:05}.bin").write_bytes(rng.randbytes(rng.randint(1, 64) * KiB))
    return folder


def copy_stdlib(folder: Path) -> Path:
    """The standard library of this Python, regular files only (no caches, no links)."""
    shutil.rmtree(folder, ignore_errors=True)
    source = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(
        source,
        folder,
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "site-packages", "*.pyc"),
    )
    for path in list(folder.rglob("*")):
        if path.is_symlink():
            path.unlink()
    return folder


def _census(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str] | str, *, shell: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(command, shell=shell, check=True, capture_output=True, env=bench_env())
    return time.perf_counter() - started


def _tools(
    ssh: sshd.ThrowawaySshd | None, source: Path, remote: Path
) -> dict[str, Callable[[], float]]:
    if ssh is None:
        return {}
    config, target = str(ssh.ssh_config), ssh.target
    shell = f"ssh -F {config}"
    tools: dict[str, Callable[[], float]] = {
        "scp -r": lambda: _timed(
            ["scp", "-q", "-F", config, "-r", str(source), f"{target}:{remote}"]
        ),
        "sftp put -r": lambda: _timed(  # noqa: S604 - our own pipeline, our own paths
            f"printf 'put -r {source} {remote}\\n' | sftp -q -F {config} -b - {target}",
            shell=True,
        ),
        "tar c | ssh tar x": lambda: _timed(  # noqa: S604 - our own pipeline, our own paths
            f"tar -C {source.parent} -cf - {source.name} | {shell} {target} "
            f"'mkdir -p {remote} && tar -C {remote} -xf -'",
            shell=True,
        ),
    }
    if shutil.which("rsync"):
        tools["rsync -a"] = lambda: _timed(
            ["rsync", "-a", "-e", shell, f"{source}", f"{target}:{remote}/"]
        )
        tools["rsync -a --fsync"] = lambda: _timed(
            ["rsync", "-a", "--fsync", "-e", shell, f"{source}", f"{target}:{remote}/"]
        )
    return tools


def measure_set(
    name: str, source: Path, base: Path, runs: int, ssh: sshd.ThrowawaySshd | None
) -> dict[str, Any]:
    """Every tool once per round on ``source``, destinations under ``base``."""
    count, size = _census(source)
    server = EftServer(base / "eft-server").start()
    assert server.proc is not None
    rss_before = _rss_kib(server.proc.pid)
    seconds: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {"server": [], "client": []}  # eft's, per round
    # One client state for every round and set of a place, as the server's data dir:
    # its name is registered once (a second key for it would be refused); the verified
    # files' log goes between rounds, so each round sends the whole set again.
    client_dir = base / "eft-client"
    try:
        for round_number in range(runs):
            remote = base / f"remote-{round_number}"

            def eft() -> float:
                assert server.proc is not None
                server.drop_files()
                (client_dir / VERIFIED_LOG).unlink(missing_ok=True)
                command = client_command(server.address, "bench", client_dir, [source], 4)
                server_before, client_before = CpuTimes.of(server.proc.pid), _children_cpu()
                took = _timed(command)
                server_after = CpuTimes.of(server.proc.pid)
                cpu["server"].append(
                    server_after.user
                    + server_after.system
                    - server_before.user
                    - server_before.system
                )
                cpu["client"].append(_children_cpu() - client_before)
                return took

            tools = {"eft v4": eft, **_tools(ssh, source, remote)}
            for tool, run in tools.items():
                shutil.rmtree(remote, ignore_errors=True)
                remote.mkdir(parents=True)
                seconds.setdefault(tool, []).append(run())
            shutil.rmtree(remote, ignore_errors=True)
        rss_after = _rss_kib(server.proc.pid)
    finally:
        server.stop()
    rows: dict[str, Any] = {}
    for tool, times in seconds.items():
        rows[tool] = {
            "seconds": median(times),
            "files_per_s": count / median(times),
            "mb_per_s": size / 1e6 / median(times),
        }
        if tool != "eft v4":
            ratios = [other / mine for mine, other in zip(seconds["eft v4"], times, strict=True)]
            rows[tool]["eft_speedup_same_round"] = median(ratios)
    return {
        "set": name,
        "files": count,
        "bytes": size,
        "runs": runs,
        "rows": rows,
        # eft's CPU seconds per 1,000 files (medians over the rounds), start-up included.
        "eft_cpu_per_1000_files": {
            side: median(values) * 1000 / max(count, 1) for side, values in cpu.items()
        },
        "seconds_per_round": seconds,
        "server_rss_kib": {"before": rss_before, "after": rss_after},
    }


def measure(settings: Settings) -> dict[str, Any]:
    count = int(os.environ.get("BENCH_MANY_FILES", "1000" if settings.quick else "10000"))
    places = {"work dir": settings.workdir / "many"}
    if os.environ.get("BENCH_DISK_DIR"):
        places["disk"] = Path(os.environ["BENCH_DISK_DIR"]) / "many"
    missing = sshd.available()
    ssh = None if missing else sshd.ThrowawaySshd(settings.workdir / "sshd-many").start()
    results: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "without_ssh": missing,
        "sets": [],
    }
    try:
        for place, base in places.items():
            base.mkdir(parents=True, exist_ok=True)
            sources = {
                f"{count} files of 1-64 KiB": make_small_files(base / "src" / "small", count),
            }
            if os.environ.get("BENCH_MANY_STDLIB", "1") != "0":  # "0": the first set only
                sources["Python stdlib"] = copy_stdlib(base / "src" / "stdlib")
            for name, source in sources.items():
                figures = measure_set(name, source, base, settings.runs, ssh)
                figures["place"] = place
                results["sets"].append(figures)
            shutil.rmtree(base, ignore_errors=True)
    finally:
        if ssh is not None:
            ssh.stop()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    out = ["## Many files (one folder, eft v4 with several files in flight)", ""]
    out.append(
        f"Load average {results['load_average_at_start']} at the start, "
        f"{results.get('load_average_at_end')} at the end."
    )
    if results.get("without_ssh"):
        out.append(f"No comparison: {results['without_ssh']} missing.")
    for figures in results["sets"]:
        rss = figures["server_rss_kib"]
        cpu_per = figures["eft_cpu_per_1000_files"]
        out += [
            "",
            f"### {figures['set']} ({figures['files']} files, {figures['bytes'] / 1e6:.1f} MB), "
            f"{figures['place']}: eft server RSS {rss['before']} → {rss['after']} KiB; "
            f"eft CPU s per 1,000 files: server {cpu_per['server']:.2f}, "
            f"client {cpu_per['client']:.2f}",
            "",
            "| tool | s | files/s | MB/s | eft's speed-up (same round) |",
            "|---|---:|---:|---:|---:|",
        ]
        for tool, row in figures["rows"].items():
            ratio = row.get("eft_speedup_same_round")
            shown = "-" if ratio is None else f"{ratio:.2f}x"
            shown_tool = tool.replace("|", "\\|")
            out.append(
                f"| {shown_tool} | {row['seconds']:.2f} | {row['files_per_s']:.0f} | "
                f"{row['mb_per_s']:.1f} | {shown} |"
            )
    return out


def main() -> int:
    results = measure(Settings.from_env())
    print(json.dumps(results, indent=1), file=sys.stderr)
    print("\n".join(markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
