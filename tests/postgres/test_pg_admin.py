"""eft-admin with a PostgreSQL registry: through a running server it works as with
SQLite (the server's registry answers); offline it refuses clearly, since the registry
is not in the data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from eft_lab.processes import clean_env
from tests.support.postgres import PostgresCluster
from tests.support.processes import ClientDir, ServerProcess, write_random_file

EXIT_NO_REGISTRY_HERE = 3


def admin(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eft_admin", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**clean_env(), **env},
        timeout=120,
        check=False,
    )


def test_admin_through_the_server_then_refused_offline(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    pg_database: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    server = pg_server_factory()
    source = write_random_file(tmp_path / "a.txt", 1000, seed=5)
    for name in ("kim", "lee"):
        assert client_factory(name, server.address).run([source]).returncode == 0
    env = {"EFT_REGISTRY": pg_url}
    listed = admin(server.data_dir, env, "list-clients", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {client["name"] for client in json.loads(listed.stdout)} == {"kim", "lee"}
    freed = admin(server.data_dir, env, "free-name", "kim", "--remove-files")
    assert freed.returncode == 0, freed.stderr
    rows = postgres.fetch(pg_database, "SELECT name FROM clients")
    assert [row["name"] for row in rows] == ["lee"]

    server.stop()
    offline = admin(server.data_dir, env, "list-clients")
    assert offline.returncode == EXIT_NO_REGISTRY_HERE
    assert "PostgreSQL registry" in offline.stderr
    assert "running server" in offline.stderr
