"""The measurements: one file by every tool, the server's cost, many clients, profiles."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import instruments, sshd, wormhole
from .common import (
    GiB,
    MiB,
    Samples,
    Settings,
    bench_env,
    median,
    python,
    run_captured,
    run_timed,
    step,
    stop_pid,
    write_random_file,
)
from .eft import EftServer, client_command

GCM = "aes128-gcm@openssh.com"
#: EFT_AES_BACKEND values as the report names them.
LABELS = {
    "pycryptodome": "PyCryptodome only",
    "auto": "default engines: OpenSSL",
    "openssl": "OpenSSL both ways",
}

# --- one big file, every tool ------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One run of one tool, by both instruments."""

    seconds: float  # wall: the client command's start (process start-up included) to its end
    transfer: float | None = None  # the file alone, by the tool's own account; None: n/a
    phases: dict[str, float] | None = None  # eft: start-up, session, transfer, exit
    client_cpu: float | None = None  # the client command's user + system CPU seconds


def eft_name(protocol: int, backend: str) -> str:
    return f"eft v{protocol} ({LABELS.get(backend, backend)})"


def _eft_runner(
    settings: Settings, source: Path, backend: str, usage: dict[str, Samples], protocol: int = 3
) -> Callable[[], Measured]:
    """One eft upload with a fresh server; records the server's CPU and peak RSS. The
    client's identity (and, for version 4, its pin of the server key) is kept between
    runs, so every run after the first logs in as a returning client. The client prints
    its ``--json`` events: the file alone is ``file_started`` to ``file_verified``."""
    env = bench_env(EFT_AES_BACKEND=backend)
    root = settings.workdir / f"eft-v{protocol}-{backend}"
    client_dir = root / "client"

    def once() -> Measured:
        server = EftServer(root, env=env).start()
        try:
            server.mark()
            command = client_command(
                server.address, f"bench-{backend}", client_dir, [source], protocol, output="--json"
            )
            done = run_captured(command, env=env)
            used = server.usage()
        finally:
            server.stop()
            server.drop_files()
        usage.setdefault("cpu_s", Samples()).add(used.cpu_seconds)
        usage.setdefault("system_s", Samples()).add(used.system_seconds)
        usage.setdefault("loop_s", Samples()).add(used.first_thread_seconds)
        usage.setdefault("peak_rss", Samples()).add(used.peak_rss)
        phases = instruments.eft_phases(
            instruments.eft_events(done.output), done.launched, done.exited
        )
        return Measured(done.seconds, phases.transfer, phases.as_dict(), done.cpu_seconds)

    return once


def _ssh_runners(
    ssh: sshd.ThrowawaySshd, source: Path, dest_dir: Path
) -> dict[str, Callable[[], Measured]]:
    """scp and sftp on a pseudo-terminal (their progress meter's final rate is the file
    alone), rsync with ``--progress`` (the same from its own clock)."""
    config = str(ssh.ssh_config)
    dest = dest_dir / "received.bin"
    size = source.stat().st_size

    def scp(*extra: str) -> Callable[[], Measured]:
        command = ["scp", "-F", config, *extra, str(source), f"{ssh.target}:{dest}"]

        def once() -> Measured:
            done = run_captured(command, terminal=True)
            dest.unlink()
            transfer = instruments.meter_seconds(done.output, size)
            return Measured(done.seconds, transfer, client_cpu=done.cpu_seconds)

        return once

    def sftp(*extra: str) -> Callable[[], Measured]:
        # Batch mode turns the meter off; its "progress" command turns it on again.
        batch = f"progress\nput {source} {dest}\n".encode()
        command = ["sftp", "-F", config, *extra, "-b", "-", ssh.target]

        def once() -> Measured:
            done = run_captured(command, stdin=batch, terminal=True)
            dest.unlink()
            transfer = instruments.meter_seconds(done.output, size)
            return Measured(done.seconds, transfer, client_cpu=done.cpu_seconds)

        return once

    rsync = [
        "rsync",
        "--whole-file",
        "--progress",
        "-e",
        f"ssh -F {config}",
        str(source),
        f"{ssh.target}:{dest}",
    ]

    def rsync_once() -> Measured:
        done = run_captured(rsync)
        dest.unlink()
        transfer = instruments.rsync_seconds(done.output, size)
        return Measured(done.seconds, transfer, client_cpu=done.cpu_seconds)

    return {
        "scp (default cipher)": scp(),
        "scp aes128-gcm": scp("-c", GCM),
        "sftp (default cipher)": sftp(),
        "sftp aes128-gcm": sftp("-c", GCM),
        "rsync over ssh": rsync_once,
    }


def _wormhole_runner(hole: wormhole.LocalWormhole, source: Path, dest_dir: Path) -> Measured:
    dest = dest_dir / "wormhole.bin"
    done = hole.send(source, dest)
    dest.unlink()
    return Measured(done.seconds)  # it reports no rate of its own with --hide-progress


def _tcp_sink(source: Path) -> Measured:
    sink = subprocess.Popen(
        [python(), "-m", "bench.sink", "listen"], stdout=subprocess.PIPE, env=bench_env()
    )
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        seconds = run_timed([python(), "-m", "bench.sink", "send", str(port), str(source)])
        sink.wait(30)
        return Measured(seconds)
    finally:
        stop_pid(sink)


WORMHOLE = "magic-wormhole (local mailbox and relay)"
BASELINE = "scp (default cipher)"


def single_file(settings: Settings, backends: list[str]) -> dict[str, Any]:
    """Every tool sends the same file of random data; the rounds are interleaved."""
    source = write_random_file(settings.workdir / "source.bin", settings.file_size)
    dest_dir = settings.workdir / "received"
    dest_dir.mkdir(parents=True, exist_ok=True)
    usage: dict[str, dict[str, Samples]] = {}
    methods: dict[str, Callable[[], Measured]] = {}
    for protocol in (3, 4):
        for backend in backends:
            name = eft_name(protocol, backend)
            runner = _eft_runner(settings, source, backend, usage.setdefault(name, {}), protocol)
            methods[name] = runner
    missing = sshd.available()
    wormhole_missing = wormhole.available()
    ssh = hole = None
    try:
        if missing is None:
            ssh = sshd.ThrowawaySshd(settings.workdir / "sshd").start()
            methods.update(_ssh_runners(ssh, source, dest_dir))
        if wormhole_missing is None:
            hole = wormhole.LocalWormhole(settings.workdir / "wormhole").start()
            methods[WORMHOLE] = partial(_wormhole_runner, hole, source, dest_dir)
        methods["plain TCP, Python (ceiling)"] = lambda: _tcp_sink(source)
        measured: dict[str, list[Measured]] = {name: [] for name in methods}
        for round_number in range(settings.runs):
            for name, once in methods.items():
                with step(f"round {round_number + 1}/{settings.runs}: {name}"):
                    measured[name].append(once())
    finally:
        if ssh is not None:
            ssh.stop()
        if hole is not None:
            hole.stop()
    rows = single_rows(measured, settings.file_size)
    stuck = 0 if hole is None else hole.stuck
    for name, row in rows.items():
        if name in usage:
            row.update(_server_figures(usage[name], settings.file_size))
    return {
        "file_size": settings.file_size,
        "runs": settings.runs,
        "ssh_missing": missing,
        "wormhole_missing": wormhole_missing,
        "wormhole_stuck_attempts": stuck,
        "rows": rows,
    }


def _same_round_ratios(mine: list[float | None], scp: list[float | None]) -> float:
    """The median over rounds of (my rate / scp's rate) in the same round; NaN when
    either instrument is missing from every round."""
    ratios = [b / s for s, b in zip(mine, scp, strict=True) if s and b]
    return median(ratios)


def single_rows(measured: dict[str, list[Measured]], size: int) -> dict[str, dict[str, Any]]:
    """Per tool: both instruments' medians (MB/s and seconds), the ratio to scp on each
    basis (same rounds), and for eft the medians of its phases."""
    rows: dict[str, dict[str, Any]] = {}
    scp = measured.get(BASELINE)
    for name, runs in measured.items():
        walls = [run.seconds for run in runs]
        transfers = [run.transfer for run in runs]
        known = [t for t in transfers if t]
        row: dict[str, Any] = {
            "seconds": {"median": median(walls), "runs": walls},
            "mb_per_s": median([size / s / 1e6 for s in walls]),
            "transfer_seconds": {"median": median(known) if known else None, "runs": transfers},
            "mb_per_s_transfer": median([size / t / 1e6 for t in known]) if known else None,
            # What the command spends outside the file: start-up, log-in, key exchange, exit.
            "outside_transfer_s": (
                median([run.seconds - run.transfer for run in runs if run.transfer])
                if known
                else None
            ),
        }
        if scp is not None:
            row["ratio_to_scp"] = _same_round_ratios(walls, [r.seconds for r in scp])
            ratio = _same_round_ratios(transfers, [r.transfer for r in scp])
            row["ratio_to_scp_transfer"] = None if math.isnan(ratio) else ratio
        cpu = [run.client_cpu for run in runs if run.client_cpu is not None]
        if cpu:
            row["client_cpu_s_per_gib"] = median([c * GiB / size for c in cpu])
        phases = [run.phases for run in runs if run.phases]
        if phases:
            row["phases_s"] = {key: median([p[key] for p in phases]) for key in phases[0]}
        rows[name] = row
    return rows


def _server_figures(usage: dict[str, Samples], size: int) -> dict[str, float]:
    """The server's CPU per GiB (all, the kernel's part, its event loop's thread) and
    its peak RSS."""
    return {
        "server_cpu_s_per_gib": median([c * GiB / size for c in usage["cpu_s"].values]),
        "server_system_s_per_gib": median([c * GiB / size for c in usage["system_s"].values]),
        "server_loop_cpu_s_per_gib": median([c * GiB / size for c in usage["loop_s"].values]),
        "server_peak_rss_mib": usage["peak_rss"].median / MiB,
    }


# --- the server's cost for the largest file -------------------------------------------


def big_file(settings: Settings, backend: str) -> dict[str, Any]:
    """The largest file each version carries: 4 GiB - 17 bytes (v3), 4 GiB (v4)."""
    results: dict[str, Any] = {}
    for protocol, size in ((3, settings.big_file_size), (4, settings.big_file_size_v4)):
        source = write_random_file(settings.workdir / f"big-v{protocol}.bin", size, seed=5)
        usage: dict[str, Samples] = {}
        once = _eft_runner(settings, source, backend, usage, protocol)
        seconds = Samples()
        try:
            for round_number in range(settings.runs):
                with step(f"v{protocol} big file {size / GiB:.2f} GiB, round {round_number + 1}"):
                    seconds.add(once().seconds)
        finally:
            source.unlink()
        results[eft_name(protocol, backend)] = {
            "protocol": protocol,
            "file_size": size,
            "mb_per_s": median([size / s / 1e6 for s in seconds.values]),
            "seconds": seconds.as_dict(),
            **_server_figures(usage, size),
        }
    return results


# --- many clients at once -------------------------------------------------------------


def concurrency(settings: Settings) -> dict[str, Any]:
    """Per version, per client count: every client a whole session with one file."""
    return {
        f"v{protocol}": {
            str(clients): _load(settings, protocol, clients) for clients in settings.concurrency
        }
        for protocol in (3, 4)
    }


def _load(settings: Settings, protocol: int, clients: int) -> dict[str, Any]:
    runs = []
    for round_number in range(settings.runs):
        root = settings.workdir / f"load-v{protocol}-{clients}-{round_number}"
        server = EftServer(root, args=("--max-connections", str(2 * clients + 100))).start()
        try:
            server.mark()
            with step(f"v{protocol}: {clients} clients, round {round_number + 1}"):
                done = subprocess.run(
                    [
                        python(),
                        "-m",
                        "bench.load",
                        "--server",
                        server.address,
                        "--clients",
                        str(clients),
                        "--size",
                        str(settings.load_file_size),
                        "--workdir",
                        str(root / "clients"),
                        "--protocol",
                        str(protocol),
                    ],
                    capture_output=True,
                    env=bench_env(),
                    check=False,
                    timeout=600,
                )
            used = server.usage()
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
        if done.returncode:
            raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
        result = json.loads(done.stdout.decode().strip().splitlines()[-1])
        result["server_cpu_s"] = used.cpu_seconds
        result["server_loop_cpu_s"] = used.first_thread_seconds
        result["server_peak_rss"] = used.peak_rss
        runs.append(result)
    return summarize_load(runs)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def summarize_load(runs: list[dict[str, Any]]) -> dict[str, Any]:
    nan = float("nan")

    def figure(pick: Callable[[dict[str, Any]], float]) -> float:
        return median([pick(run) for run in runs])

    return {
        "runs": len(runs),
        "aggregate_mb_per_s": figure(
            lambda r: r["clients"] * r["size"] / r["wall_seconds"] / 1e6 if r["latencies"] else 0
        ),
        "sessions_per_s": figure(lambda r: len(r["latencies"]) / r["wall_seconds"]),
        "p50_latency_s": figure(lambda r: _percentile(r["latencies"], 0.50)),
        "p99_latency_s": figure(lambda r: _percentile(r["latencies"], 0.99)),
        "max_latency_s": figure(lambda r: max(r["latencies"], default=float("nan"))),
        "failures": sum(r["failures"] for r in runs),
        "errors": sorted({e for r in runs for e in r["errors"]})[:10],
        "server_cpu_s": figure(lambda r: r["server_cpu_s"]),
        # Per completed session: the server's CPU (its /proc user + system, from after its
        # start-up to the load's end) and, apart, the load generator's own.
        "server_cpu_ms_per_session": figure(
            lambda r: 1000 * r["server_cpu_s"] / len(r["latencies"]) if r["latencies"] else nan
        ),
        # The event loop's thread alone: one core's worth of it bounds sessions/s
        # whatever the other core does (issue 22).
        "server_loop_cpu_ms_per_session": figure(
            lambda r: (
                1000 * r.get("server_loop_cpu_s", nan) / len(r["latencies"])
                if r["latencies"]
                else nan
            )
        ),
        "load_cpu_s": figure(lambda r: r.get("cpu_seconds_sessions", nan)),
        "load_cpu_s_total": figure(lambda r: r.get("cpu_seconds_total", nan)),
        "load_cpu_ms_per_session": figure(
            lambda r: (
                1000 * r.get("cpu_seconds_sessions", nan) / len(r["latencies"])
                if r["latencies"]
                else nan
            )
        ),
        "server_peak_rss_mib": figure(lambda r: r["server_peak_rss"] / MiB),
        "wall_seconds": [r["wall_seconds"] for r in runs],
    }


# --- profiles -------------------------------------------------------------------------


def profiles(settings: Settings, results_dir: Path) -> dict[str, Any]:
    """py-spy samples the server and the client during one upload, per version."""
    from . import stacks  # noqa: PLC0415

    spy = shutil.which("py-spy") or str(Path(python()).parent / "py-spy")
    if not Path(spy).exists():
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    source = write_random_file(settings.workdir / "source.bin", settings.file_size)
    out: dict[str, Any] = {}
    for protocol in (3, 4):
        root = settings.workdir / f"profile-v{protocol}"
        server = EftServer(root).start()
        suffix = "" if protocol == 3 else "-v4"
        try:
            assert server.proc is not None
            server_raw = results_dir / f"profile-server{suffix}.txt"
            client_raw = results_dir / f"profile-client{suffix}.txt"
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(server.proc.pid),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-o",
                    str(server_raw),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            command = client_command(server.address, "profile", root / "client", [source], protocol)
            subprocess.run(
                [spy, "record", "-r", "250", "-f", "raw", "-o", str(client_raw), "--", *command],
                capture_output=True,
                env=bench_env(),
                check=True,
            )
            time.sleep(0.5)
            recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
            recorder.wait(30)
            for side, raw in (("server", server_raw), ("client", client_raw)):
                if raw.exists():
                    out[f"v{protocol} {side}"] = stacks.summary(raw)
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
    return out
