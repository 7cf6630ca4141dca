"""The measurements: one file by every tool, the server's cost, many clients, profiles."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import sshd
from .common import (
    GiB,
    MiB,
    Samples,
    Settings,
    bench_env,
    median,
    python,
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


def eft_name(protocol: int, backend: str) -> str:
    return f"eft v{protocol} ({LABELS.get(backend, backend)})"


def _eft_runner(
    settings: Settings, source: Path, backend: str, usage: dict[str, Samples], protocol: int = 3
) -> Callable[[], float]:
    """One eft upload with a fresh server; records the server's CPU and peak RSS. The
    client's identity (and, for version 4, its pin of the server key) is kept between
    runs, so every run after the first logs in as a returning client."""
    env = bench_env(EFT_AES_BACKEND=backend)
    root = settings.workdir / f"eft-v{protocol}-{backend}"
    client_dir = root / "client"

    def once() -> float:
        server = EftServer(root, env=env).start()
        try:
            server.mark()
            command = client_command(
                server.address, f"bench-{backend}", client_dir, [source], protocol
            )
            seconds = run_timed(command, env=env)
            used = server.usage()
        finally:
            server.stop()
            server.drop_files()
        usage.setdefault("cpu_s", Samples()).add(used.cpu_seconds)
        usage.setdefault("system_s", Samples()).add(used.system_seconds)
        usage.setdefault("peak_rss", Samples()).add(used.peak_rss)
        return seconds

    return once


def _ssh_runners(ssh: sshd.ThrowawaySshd, source: Path, dest_dir: Path) -> dict[str, Any]:
    config = str(ssh.ssh_config)
    dest = dest_dir / "received.bin"

    def scp(*extra: str) -> Callable[[], float]:
        command = ["scp", "-q", "-F", config, *extra, str(source), f"{ssh.target}:{dest}"]
        return lambda: _timed_and_clean(command, dest)

    def sftp(*extra: str) -> Callable[[], float]:
        def once() -> float:
            started = time.perf_counter()
            done = subprocess.run(
                ["sftp", "-q", "-F", config, *extra, "-b", "-", ssh.target],
                input=f"put {source} {dest}\n".encode(),
                capture_output=True,
                check=False,
            )
            seconds = time.perf_counter() - started
            if done.returncode:
                raise RuntimeError(f"sftp failed: {done.stderr.decode(errors='replace')}")
            dest.unlink()
            return seconds

        return once

    rsync = [
        "rsync",
        "--whole-file",
        "-e",
        f"ssh -F {config}",
        str(source),
        f"{ssh.target}:{dest}",
    ]
    return {
        "scp (default cipher)": scp(),
        "scp aes128-gcm": scp("-c", GCM),
        "sftp (default cipher)": sftp(),
        "sftp aes128-gcm": sftp("-c", GCM),
        "rsync over ssh": lambda: _timed_and_clean(rsync, dest),
    }


def _timed_and_clean(command: list[str], dest: Path) -> float:
    seconds = run_timed(command)
    dest.unlink()
    return seconds


def _tcp_sink(source: Path) -> float:
    sink = subprocess.Popen(
        [python(), "-m", "bench.sink", "listen"], stdout=subprocess.PIPE, env=bench_env()
    )
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        seconds = run_timed([python(), "-m", "bench.sink", "send", str(port), str(source)])
        sink.wait(30)
        return seconds
    finally:
        stop_pid(sink)


def single_file(settings: Settings, backends: list[str]) -> dict[str, Any]:
    """Every tool sends the same file of random data; the rounds are interleaved."""
    source = write_random_file(settings.workdir / "source.bin", settings.file_size)
    dest_dir = settings.workdir / "received"
    dest_dir.mkdir(parents=True, exist_ok=True)
    usage: dict[str, dict[str, Samples]] = {}
    methods: dict[str, Callable[[], float]] = {}
    for protocol in (3, 4):
        for backend in backends:
            name = eft_name(protocol, backend)
            runner = _eft_runner(settings, source, backend, usage.setdefault(name, {}), protocol)
            methods[name] = runner
    missing = sshd.available()
    ssh = None
    if missing is None:
        ssh = sshd.ThrowawaySshd(settings.workdir / "sshd").start()
        methods.update(_ssh_runners(ssh, source, dest_dir))
    methods["plain TCP, Python (ceiling)"] = lambda: _tcp_sink(source)
    seconds: dict[str, Samples] = {name: Samples() for name in methods}
    try:
        for round_number in range(settings.runs):
            for name, once in methods.items():
                with step(f"round {round_number + 1}/{settings.runs}: {name}"):
                    seconds[name].add(once())
    finally:
        if ssh is not None:
            ssh.stop()
    size = settings.file_size
    rows: dict[str, Any] = {}
    baseline = "scp (default cipher)"
    for name, samples in seconds.items():
        rates = [size / s / 1e6 for s in samples.values]
        row: dict[str, Any] = {"seconds": samples.as_dict(), "mb_per_s": median(rates)}
        if baseline in seconds:
            ratios = [
                (size / s) / (size / b)
                for s, b in zip(samples.values, seconds[baseline].values, strict=True)
            ]
            row["ratio_to_scp"] = median(ratios)  # the median of same-round ratios
        if name in usage:
            row.update(_server_figures(usage[name], size))
        rows[name] = row
    return {"file_size": size, "runs": settings.runs, "ssh_missing": missing, "rows": rows}


def _server_figures(usage: dict[str, Samples], size: int) -> dict[str, float]:
    """The server's CPU per GiB (all, and the kernel's part) and its peak RSS."""
    return {
        "server_cpu_s_per_gib": median([c * GiB / size for c in usage["cpu_s"].values]),
        "server_system_s_per_gib": median([c * GiB / size for c in usage["system_s"].values]),
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
                    seconds.add(once())
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
        result["server_peak_rss"] = used.peak_rss
        runs.append(result)
    return _summarize_load(runs)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def _summarize_load(runs: list[dict[str, Any]]) -> dict[str, Any]:
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
