"""The tests' PostgreSQL cluster: the lab's (eft_lab.postgres), which
``eft-lab --servers N`` starts the same way for its replicas.

By default each test session starts a cluster of its own and destroys it at the end.
With ``EFT_TEST_POSTGRES_ROOT`` set to the root of a cluster already running (one
started by ``python -m tests.support.postgres``), the session uses that one instead and
leaves it running: mutation testing runs a fresh pytest session per mutant, and
initdb plus a start for each would cost more than the tests themselves. Such a shared
cluster gets uniquely named databases, dropped at the end of each test."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from eft_lab.postgres import (
    PORT,
    SUPERUSER,
    PostgresCluster,
    PostgresMissing,
    find_bin_dir,
)

#: The root of a running cluster for the session to use instead of starting one.
SHARED_ROOT = "EFT_TEST_POSTGRES_ROOT"


class SharedCluster(PostgresCluster):
    """A cluster started outside the test session: never stopped or destroyed by it."""

    @classmethod
    def attach(cls, root: Path) -> SharedCluster:
        cluster = cls(root, find_bin_dir())
        cluster.password = cluster.password_file.read_text().strip()
        return cluster

    def new_database(self, prefix: str = "eft_test") -> str:
        # Sessions come and go on the same cluster: a counter would repeat names.
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Left running for the next session."""

    def destroy(self) -> None:
        """Left running for the next session."""


def shared_cluster() -> SharedCluster | None:
    root = os.environ.get(SHARED_ROOT)
    return SharedCluster.attach(Path(root)) if root else None


def main() -> None:
    """Start a cluster, print its root (for ``EFT_TEST_POSTGRES_ROOT``), and keep it
    until interrupted (SIGINT or SIGTERM), then destroy it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    cluster = PostgresCluster.create().start()
    print(cluster.root, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.destroy()


__all__ = [
    "PORT",
    "SHARED_ROOT",
    "SUPERUSER",
    "PostgresCluster",
    "PostgresMissing",
    "SharedCluster",
    "find_bin_dir",
    "shared_cluster",
]

if __name__ == "__main__":
    main()
