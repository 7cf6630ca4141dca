"""Fixtures: one PostgreSQL cluster per test session, a fresh database per test, and
servers on it. PostgreSQL missing: a failure in CI (it installs it), a skip with the
reason elsewhere (a developer's machine without it), never silent."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.postgres import PostgresCluster, PostgresMissing, SharedCluster, shared_cluster
from tests.support.processes import ServerProcess


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    shared = shared_cluster()  # EFT_TEST_POSTGRES_ROOT: one started outside the session
    if shared is not None:
        yield shared
        return
    try:
        cluster = PostgresCluster.create()
    except PostgresMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI installs it: .ci/run)", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.fixture
def pg_database(postgres: PostgresCluster) -> Iterator[str]:
    name = postgres.new_database()
    yield name
    if isinstance(postgres, SharedCluster):  # thousands of sessions: drop what they made
        postgres.drop_database(name)


@pytest.fixture
def pg_url(postgres: PostgresCluster, pg_database: str) -> str:
    return postgres.url(pg_database)


@pytest.fixture
def pg_server_factory(
    server_factory: Callable[..., ServerProcess], postgres: PostgresCluster, pg_url: str
) -> Callable[..., ServerProcess]:
    """``server_factory`` with the test's database as the registry (credentials in the
    environment, as an operator gives them)."""

    def make(*args: str, name: str = "server", start: bool = True) -> ServerProcess:
        return server_factory(
            *args, "--registry", pg_url, name=name, env=postgres.server_env(), start=start
        )

    return make
