"""The S3 store's fixtures: one SeaweedFS per test session, a bucket per test, and
eft servers that keep their files in that bucket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess
from tests.support.seaweedfs import SeaweedFS

PREFIX = "eft"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    s3 = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    return seaweedfs.new_bucket()


@pytest.fixture
def s3_server_factory(
    tmp_path: Path, seaweedfs: SeaweedFS, bucket: str
) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(*args: str, name: str = "server", start: bool = True) -> ServerProcess:
        root = tmp_path / name
        root.mkdir()
        server = ServerProcess(
            root / "data",
            tmp_path / f"{name}.log",
            args=("--store", f"s3://{bucket}/{PREFIX}", *args),
            hold_port=True,
        )
        server.env.update(seaweedfs.server_env())
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        if server.proc is not None:
            server.stop()
        server.release()


@pytest.fixture
def s3_server(s3_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return s3_server_factory()


def v3_key(client_id_hex: str, name: str) -> str:
    return f"{PREFIX}/files/{client_id_hex}/{name}"


def v4_key(client_id_hex: str, name: str) -> str:
    return f"{PREFIX}/v4/files/{client_id_hex}/{name}"
