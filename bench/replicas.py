"""Server replicas behind HAProxy (docs/SCALING.md, "Bench"): what 1, 2 and 3 replicas
carry together, as ``eft-lab --servers N`` runs them with real processes.

One PostgreSQL cluster (the shared registry, eft_lab.postgres) and one SeaweedFS
(``weed mini``, the shared S3 store, eft_lab.seaweedfs) for the whole part; per
configuration a fresh database and bucket prefix, N ``eft-server`` processes with
``--proxy-port`` and HAProxy (deploy/haproxy/eft.cfg) in front. Two loads through
HAProxy, both version 4 sessions from ``bench.load`` (one process, every client a whole
session): a few clients with a large file each (aggregate MB/s) and many clients with a
tiny file each (sessions per second). Beside them, one replica on its local disk (no
``--store``): the cost of S3 against the local store.

Every process's CPU seconds during the loads, and each replica's peak resident memory,
are reported with the load average: on a 2-core machine the replicas, HAProxy,
SeaweedFS, PostgreSQL and the load generator share two cores, and those seconds say
which of them bounds each figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from eft_lab.haproxy import HAProxyMissing, HAProxyProcess, find_haproxy
from eft_lab.processes import read_json_lines

from .common import MiB, Settings, bench_env, peak_rss, python, step
from .eft import EftServer

COUNTS = (1, 2, 3)
#: (clients, bytes each): the throughput load and the sessions load, full and quick.
THROUGHPUT = (8, 32 * MiB)
SESSIONS = (200, 1024)
THROUGHPUT_QUICK = (4, 8 * MiB)
SESSIONS_QUICK = (60, 1024)
BUCKET = "eft-bench"


@dataclass
class Engines:
    """The shared PostgreSQL and S3 server, started once for the part."""

    root: Path
    postgres: Any = None  # eft_lab.postgres.PostgresCluster (asyncpg: an extra)
    s3: Any = None  # eft_lab.seaweedfs.SeaweedFS (botocore: an extra)

    def start(self) -> Engines:
        from eft_lab.postgres import PostgresCluster  # noqa: PLC0415 - asyncpg: an extra
        from eft_lab.seaweedfs import SeaweedFS  # noqa: PLC0415 - botocore: an extra

        self.postgres = PostgresCluster.create().start()
        (self.root / "s3").mkdir(parents=True, exist_ok=True)
        self.s3 = SeaweedFS(self.root / "s3").start()
        self.s3.client().create_bucket(Bucket=BUCKET)
        return self

    def stop(self) -> None:
        if self.s3 is not None:
            self.s3.stop()
        if self.postgres is not None:
            self.postgres.destroy()

    def pids(self) -> dict[str, int]:
        return {"seaweedfs": self.s3.proc.pid, "postgresql": self.postgres.postmaster_pid()}


@dataclass
class Deployment:
    """N replicas on the engines (``store``: "s3" or "local"), HAProxy in front."""

    root: Path
    engines: Engines
    count: int
    store: str
    replicas: list[EftServer] = field(default_factory=list)
    haproxy: HAProxyProcess | None = None
    haproxy_dir: Path | None = None

    def start(self) -> Deployment:
        database = self.engines.postgres.new_database("bench")
        args = ["--proxy-port", "0", "--registry", self.engines.postgres.url(database)]
        args += ["--max-connections", "2000"]
        env = bench_env(**self.engines.postgres.server_env())
        if self.store == "s3":
            args += ["--store", f"s3://{BUCKET}/{self.root.name}"]
            env.update(self.engines.s3.server_env())
        key = None
        for index in range(1, self.count + 1):
            replica = EftServer(self.root / f"replica{index}", tuple(args), env)
            if key is not None:  # one identity: the first replica's key in each
                replica.data_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(key, replica.data_dir / "server.key")
                (replica.data_dir / "server.key").chmod(0o600)
            self.replicas.append(replica.start())
            key = replica.data_dir / "server.key"
        backends = {f"r{i}": _proxy_address(r) for i, r in enumerate(self.replicas, 1)}
        # A short directory of its own: its stats socket's path must fit a sockaddr_un.
        self.haproxy_dir = Path(tempfile.mkdtemp(prefix="eft-bench-haproxy-", dir="/tmp"))
        self.haproxy = HAProxyProcess.on_any_port(self.haproxy_dir, backends).start()
        wanted = dict.fromkeys(backends, "UP")
        if self.haproxy.wait_for_states(wanted) != wanted:
            raise RuntimeError(f"HAProxy does not see every replica up: {self.haproxy.states()}")
        return self

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for replica in self.replicas:
            replica.stop()
        if self.haproxy_dir is not None:
            shutil.rmtree(self.haproxy_dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        assert self.haproxy is not None and self.haproxy.proc is not None
        found = {f"replica{i}": r.proc.pid for i, r in enumerate(self.replicas, 1) if r.proc}
        return {**found, "haproxy": self.haproxy.proc.pid, **self.engines.pids()}


def _marked_down(haproxy: HAProxyProcess) -> int:
    """How many times HAProxy's checks have marked a replica down (``chkdown``): a
    replica too busy to answer its check within ``timeout check`` is cut off, and its
    sessions with it (on-marked-down shutdown-sessions)."""
    lines = haproxy.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return sum(
        int(row.get("chkdown") or 0)
        for row in rows
        if row.get("pxname") == "eft_replicas" and row.get("svname") in haproxy.replicas
    )


def _proxy_address(replica: EftServer) -> str:
    listening = next(
        r for r in read_json_lines(replica.root / "server.log") if r.get("event") == "listening"
    )
    return f"127.0.0.1:{listening['proxy_port']}"


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and of each of its children, by PID:
    PostgreSQL's work is done by a backend per connection, not by the postmaster."""
    found: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # gone in between: its seconds are lost either way
            continue
        found[process.pid] = float(times.user) + float(times.system)
    return found


@contextmanager
def _cpu_of(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """CPU seconds each process (with its children) used inside the block, into ``into``."""
    before = {name: _tree_cpu(pid) for name, pid in pids.items()}
    yield
    for name, pid in pids.items():
        now = _tree_cpu(pid)
        used = sum(seconds - before[name].get(child, 0.0) for child, seconds in now.items())
        into[name] = round(max(0.0, used), 2)


def _load(address: str, workdir: Path, clients: int, size: int, prefix: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(python(), "-m", "bench.load", "--server", address, "--clients", str(clients)),
            *("--size", str(size), "--workdir", str(workdir), "--protocol", "4"),
            *("--prefix", prefix),
            # The CLI client: the S3 store does not offer STREAM, which the lean client
            # needs, and files larger than one record take the resumable path anyway.
            *("--client", "cli"),
        ],
        capture_output=True,
        env=bench_env(),
        check=False,
        timeout=900,
    )
    if done.returncode:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def _one_load(deployment: Deployment, name: str, clients: int, size: int) -> dict[str, Any]:
    """One load through HAProxy: its figures, every process's CPU, the load average."""
    cpu: dict[str, float] = {}
    workdir = deployment.root / f"clients-{name}"
    assert deployment.haproxy is not None
    down_before = _marked_down(deployment.haproxy)
    with _cpu_of(deployment.pids(), cpu):
        result = _load(deployment.haproxy.address, workdir, clients, size, name)
    marked_down = _marked_down(deployment.haproxy) - down_before
    shutil.rmtree(workdir, ignore_errors=True)
    wall = result["wall_seconds"]
    done = len(result["latencies"])
    cpu["load generator"] = round(result["cpu_seconds_sessions"], 2)
    return {
        "clients": clients,
        "size": size,
        "wall_seconds": round(wall, 3),
        "mb_per_s": round(done * size / wall / 1e6, 2),
        "sessions_per_s": round(done / wall, 1),
        "failures": result["failures"],
        "errors": result["errors"],
        "replicas_marked_down": marked_down,
        "cpu_seconds": cpu,
        "cpu_busiest": max(cpu, key=lambda k: cpu[k]),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _configuration(
    engines: Engines, root: Path, count: int, store: str, quick: bool
) -> dict[str, Any]:
    deployment = Deployment(root / f"{store}-{count}", engines, count, store)
    try:
        deployment.start()
        throughput = _one_load(
            deployment, "throughput", *(THROUGHPUT_QUICK if quick else THROUGHPUT)
        )
        sessions = _one_load(deployment, "sessions", *(SESSIONS_QUICK if quick else SESSIONS))
        memory = {
            f"replica{i}": peak_rss(r.proc.pid)
            for i, r in enumerate(deployment.replicas, 1)
            if r.proc
        }
    finally:
        deployment.stop()
        shutil.rmtree(deployment.root, ignore_errors=True)
    return {
        "replicas": count,
        "store": store,
        "throughput": throughput,
        "sessions": sessions,
        "replica_peak_rss": memory,
    }


def missing() -> str | None:
    """Why the part cannot run here (an engine not installed), or None."""
    try:
        from eft_lab.postgres import PostgresMissing, find_bin_dir  # noqa: PLC0415
        from eft_lab.seaweedfs import weed_binary  # noqa: PLC0415
    except ImportError as exc:  # asyncpg, botocore: the postgres and s3 extras
        return f"{exc} (pip install 'eft[dev]')"
    try:
        find_bin_dir()
        find_haproxy()
        weed_binary()
    except (PostgresMissing, HAProxyMissing, RuntimeError) as exc:
        return str(exc)
    return None


def measure(settings: Settings, counts: tuple[int, ...] = COUNTS) -> dict[str, Any]:
    """Each replica count on the S3 store, then one replica on the local store."""
    reason = missing()
    if reason is not None:
        return {"skipped": reason}
    root = settings.workdir / "replicas"
    root.mkdir(parents=True, exist_ok=True)
    engines = Engines(root)
    started = time.perf_counter()
    rows = []
    try:
        with step("PostgreSQL and SeaweedFS"):
            engines.start()
        for count, store in [*((n, "s3") for n in counts), (1, "local")]:
            with step(f"{count} replica(s), {store} store"):
                rows.append(_configuration(engines, root, count, store, settings.quick))
    finally:
        engines.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "cores": os.cpu_count(),
        "configurations": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    """The part's section of bench.md: a row per configuration and load."""
    if "skipped" in results:
        return ["## Server replicas behind HAProxy", "", f"Skipped: {results['skipped']}"]
    out = [
        f"## Server replicas behind HAProxy ({results['cores']} cores, every process on them)",
        "",
        "Version 4 sessions from one load process through HAProxy; PostgreSQL registry; "
        "`s3`: SeaweedFS store, `local`: each replica's disk. CPU seconds during the load.",
        "",
        "| replicas | store | load | MB/s | sessions/s | failures (marked down) | busiest (CPU s) "
        "| load average after | replica peak RSS (MiB) |",
        "|---:|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in results["configurations"]:
        rss = " / ".join(f"{v / MiB:.0f}" for v in row["replica_peak_rss"].values())
        for name in ("throughput", "sessions"):
            load = row[name]
            cpu = load["cpu_seconds"]
            top = sorted(cpu, key=lambda k: -cpu[k])[:3]
            busiest = ", ".join(f"{k} {cpu[k]:.1f}" for k in top)
            what = f"{load['clients']} x {_size(load['size'])}"
            out.append(
                f"| {row['replicas']} | {row['store']} | {what} | {load['mb_per_s']:.1f} "
                f"| {load['sessions_per_s']:.1f} | {load['failures']} "
                f"({load['replicas_marked_down']}) | {busiest} "
                f"| {load['load_average_after']} | {rss} |"
            )
    return out


def _size(size: int) -> str:
    return f"{size / MiB:g} MiB" if size >= MiB else f"{size / 1024:g} KiB"


def main() -> int:
    """``python -m bench.replicas``: this part alone, its JSON and Markdown printed."""
    results = measure(Settings.from_env())
    print(json.dumps(results, indent=1))
    print("\n".join(markdown(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
