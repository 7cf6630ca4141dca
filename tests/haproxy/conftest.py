"""Fixtures: the real Debian ``haproxy`` in front of eft-server replicas, on loopback,
started and stopped by its PID. HAProxy missing: a failure in CI (it installs it), a
skip with the reason elsewhere, never silent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_lab.haproxy import HAProxyMissing, HAProxyProcess, find_haproxy
from eft_server import server_key
from eft_server.storage import secure_data_dir
from tests.postgres.conftest import pg_database, pg_url, postgres
from tests.support.gated_relay import GatedRelay
from tests.support.postgres import PostgresCluster
from tests.support.processes import ServerProcess
from tests.support.seaweedfs import allocate_ports

__all__ = ["pg_database", "pg_url", "postgres"]  # the PostgreSQL fixtures, shared

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


@pytest.fixture
def relay_factory() -> Iterator[Callable[[str, int], GatedRelay]]:
    relays: list[GatedRelay] = []

    def make(target: str, hold_after: int) -> GatedRelay:
        relays.append(GatedRelay(target, hold_after))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


@pytest.fixture
def shared_server_key(tmp_path: Path) -> Path:
    """One v4 server key for the cluster (what an operator mounts as a secret): made
    once, then copied into each replica's data directory before it starts."""
    keys = tmp_path / "cluster-key"
    server_key.load_or_create(keys)
    return keys / server_key.KEY_FILE


@pytest.fixture
def replica_factory(
    server_factory: Callable[..., ServerProcess],
    postgres: PostgresCluster,
    pg_url: str,
    shared_server_key: Path,
) -> Callable[..., ServerProcess]:
    """A replica on the test's PostgreSQL database with the cluster's server key."""

    def make(name: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        replica = server_factory(
            *REPLICA_ARGS,
            "--registry",
            pg_url,
            *args,
            name=name,
            env={**postgres.server_env(), **(env or {})},
            start=False,
        )
        secure_data_dir(replica.data_dir)
        key = replica.data_dir / server_key.KEY_FILE
        shutil.copyfile(shared_server_key, key)
        key.chmod(0o600)
        return replica.start()

    return make
