"""The S3 store's fixtures: one SeaweedFS per test session, a bucket per test, and
eft servers that keep their files in that bucket.

``EFT_TEST_S3_ENDPOINT=http://127.0.0.1:PORT`` reuses a SeaweedFS started elsewhere
(with tests.support.seaweedfs's keys) instead of starting one: mutation testing runs a
pytest session per mutant, and a second and a half of start-up each adds up. Its
buckets are then named at random, so sessions sharing it never share a bucket. Tests
that stop or restart the S3 server cannot use it (they need their own)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from eft_server.pg_connect import PgSettings
from tests.postgres.conftest import pg_database, pg_url, postgres
from tests.support.postgres import PostgresCluster
from tests.support.processes import ServerProcess
from tests.support.seaweedfs import SeaweedFS

PREFIX = "eft"
REUSE = "EFT_TEST_S3_ENDPOINT"

__all__ = ["pg_database", "pg_url", "postgres"]  # PostgreSQL's, for the shared uploads' tests


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    reused = os.environ.get(REUSE)
    if reused:
        port = urlsplit(reused).port
        assert port is not None, f"{REUSE}={reused!r}: give http://127.0.0.1:PORT"
        # no process of ours: stop() and kill() are not for it
        yield SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), ports={"s3": port})
        return
    s3 = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def pg(postgres: PostgresCluster, pg_url: str) -> PgSettings:
    """The test's database for the uploads shared by replicas: migrated, with
    shared_support's two clients registered."""
    # shared_support imports this module (PREFIX): imported here, not at the top
    from tests.s3.shared_support import pg_settings  # noqa: PLC0415

    return pg_settings(postgres, pg_url)


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    if seaweedfs.proc is None:  # reused (EFT_TEST_S3_ENDPOINT): shared with other sessions
        name = f"eft-test-{secrets.token_hex(6)}"
        seaweedfs.client().create_bucket(Bucket=name)
    else:
        name = seaweedfs.new_bucket()
    yield name
    # SeaweedFS gives each bucket volumes of its own, out of a number fixed by its free
    # disk space: one session's SeaweedFS ran out after about 40 buckets kept.
    _delete_bucket(seaweedfs, name)


def _delete_bucket(seaweedfs: SeaweedFS, name: str) -> None:
    """Best effort: a test may have left its S3 server stopped."""
    with contextlib.suppress(BotoCoreError, ClientError):
        _empty_and_delete(seaweedfs.client(), name)


def _empty_and_delete(s3: Any, name: str) -> None:
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


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
