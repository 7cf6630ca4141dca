"""The lab's replicas (lab/eft_lab/replicas.py) without starting them (the whole set,
with PostgreSQL, SeaweedFS and HAProxy, is tests/lab/test_lab_replicas.py): what it
gathers over its servers, each replica's share read from a real /metrics endpoint in this process,
and HAProxy's address for a replica taken from the replica's "listening" line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from eft_lab.replicas import ServerReplicas, _proxy_address


@dataclass
class _Server:
    address: str
    metrics_port: int | None
    files_dirs: list[Path]
    records: list[dict[str, Any]] = field(default_factory=list)
    proc: object = None
    stopped: bool = False

    @property
    def metrics_ports(self) -> list[int]:
        return [] if self.metrics_port is None else [self.metrics_port]

    def logs(self) -> list[dict[str, Any]]:
        return self.records

    def stop(self) -> None:
        self.stopped = True


class _S3:
    def client(self) -> object:
        return object()


@pytest.fixture
def endpoint() -> Iterator[tuple[int, CollectorRegistry]]:
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield server.server_address[1], registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_each_replicas_share_and_what_is_gathered(
    tmp_path: Path, endpoint: tuple[int, CollectorRegistry]
) -> None:
    port, registry = endpoint
    Counter("eft_connections", "", ["version"], registry=registry).labels("4").inc(5)
    headers = Counter("eft_proxy_headers", "", ["result"], registry=registry)
    headers.labels("proxied").inc(4)
    headers.labels("health_check").inc(9)
    Counter("eft_transfers", "", ["outcome", "version"], registry=registry).labels(
        "verified", "4"
    ).inc(3)
    replicas = ServerReplicas(tmp_path, 2)
    first = _Server("127.0.0.1:1", port, [tmp_path / "a"], records=[{"event": "x"}])
    second = _Server("127.0.0.1:2", port, [tmp_path / "b"])
    replicas.servers = cast(Any, [first, second])
    assert replicas.per_replica()[0] == {
        "replica": "r1",
        "address": "127.0.0.1:1",
        "connections": 5,
        "proxied": 4,
        "health_checks": 9,
        "verified": 3,
    }
    assert [row["replica"] for row in replicas.per_replica()] == ["r1", "r2"]
    assert replicas.metrics_ports == [port, port] and replicas.metrics_port == port
    replicas.s3, replicas.bucket = _S3(), "eft-lab-1"
    assert str(replicas.files_dirs) == "s3://eft-lab-1/lab", "one bucket for all"
    replicas.s3 = None  # a stand-in: nothing to stop
    assert replicas.logs() == [{"event": "x"}], "the first replica's"
    replicas.stop()
    assert not first.stopped, "a server that never started is not stopped"


def test_haproxy_reaches_a_replica_on_its_proxy_port() -> None:
    server = _Server("127.0.0.1:1", None, [], records=[
        {"event": "start"}, {"event": "listening", "port": 1, "proxy_port": 4242},
    ])  # fmt: skip
    assert _proxy_address(cast(Any, server)) == "127.0.0.1:4242"


def test_no_replicas_no_metrics_port(tmp_path: Path) -> None:
    replicas = ServerReplicas(tmp_path, 1)
    assert replicas.metrics_port is None and replicas.metrics_ports == []
    replicas.stop()  # nothing started: nothing to stop


def test_without_the_scale_extra_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "eft_lab.seaweedfs", None)  # as if botocore were missing
    with pytest.raises(RuntimeError, match=r"pip install 'eft\[scale\]'"):
        ServerReplicas(tmp_path, 2).start()
    assert not (tmp_path / "seaweedfs").exists(), "nothing started"
