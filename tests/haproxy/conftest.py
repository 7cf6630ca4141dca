"""Fixtures: the real Debian ``haproxy`` in front of eft-server replicas, on loopback,
started and stopped by its PID. HAProxy missing: a failure in CI (it installs it), a
skip with the reason elsewhere, never silent."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_lab.haproxy import HAProxyMissing, HAProxyProcess, find_haproxy
from tests.support.processes import ServerProcess
from tests.support.seaweedfs import allocate_ports

#: A replica on loopback only, with its proxy port and metrics.
REPLICA_ARGS = (
    "--host",
    "127.0.0.1",
    "--proxy-port",
    "0",
    "--metrics-port",
    "0",
    "--metrics-host",
    "127.0.0.1",
)


@pytest.fixture(scope="session")
def haproxy_program() -> str:
    try:
        return find_haproxy()
    except HAProxyMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI installs it: .ci/run)", pytrace=False)
        pytest.skip(str(exc))


def proxy_address(server: ServerProcess) -> str:
    """Where HAProxy sends a replica its connections: the replica's --proxy-port."""
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    return f"127.0.0.1:{listening['proxy_port']}"


@pytest.fixture
def haproxy_factory(
    haproxy_program: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, ServerProcess]], HAProxyProcess]]:
    started: list[HAProxyProcess] = []

    def make(replicas: dict[str, ServerProcess]) -> HAProxyProcess:
        # Below the ephemeral range and never handed out twice (allocate_ports).
        (port,) = allocate_ports(1)
        front = HAProxyProcess(
            tmp_path / f"haproxy{len(started)}",
            f"127.0.0.1:{port}",
            {name: proxy_address(server) for name, server in replicas.items()},
        )
        started.append(front)
        return front.start()

    yield make
    for front in started:
        front.stop()
