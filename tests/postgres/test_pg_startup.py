"""A PostgreSQL registry the server cannot use: exit 8, one ``registry_unavailable``
line that says why, and never a password in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eft_lab.processes import clean_env
from eft_server.pg_schema import MIGRATIONS
from tests.support.postgres import PostgresCluster

EXIT_REGISTRY_UNAVAILABLE = 8


def start(tmp_path: Path, registry: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A server that must fail to start: its exit code and its one error line."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "eft_server", "--log-format", "json"),
            *("--host", "127.0.0.1", "--port", "0", "--data-dir", "data"),
            *("--registry", registry),
        ],
        cwd=tmp_path,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert "listening" not in [r.get("event") for r in records]
    (error,) = [r for r in records if r.get("level") == "error"]
    return done.returncode, error


def test_a_wrong_password_is_refused_clearly(
    postgres: PostgresCluster, pg_url: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    env = {**postgres.server_env(), "EFT_PG_PASSWORD_FILE": str(wrong)}
    code, error = start(tmp_path, pg_url, env)
    assert code == EXIT_REGISTRY_UNAVAILABLE
    assert error["event"] == "registry_unavailable"
    assert "password authentication failed" in error["message"]
    assert "not-the-password" not in json.dumps(error)
    assert postgres.password not in json.dumps(error)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://eft:secret@127.0.0.1/eft", "must not hold a user or a password"),
        ("postgresql://127.0.0.1", "expected postgresql://host[:port]/dbname"),
        ("postgresql://127.0.0.1:99999/eft", "out of range"),
        ("postgresql://127.0.0.1/eft?sslmode=disable", "options in the URL"),
    ],
    ids=["credentials", "no-database", "bad-port", "options"],
)
def test_a_bad_url_is_refused_before_connecting(url: str, why: str, tmp_path: Path) -> None:
    code, error = start(tmp_path, url, {})
    assert code == EXIT_REGISTRY_UNAVAILABLE
    assert why in error["message"]
    assert "secret" not in json.dumps(error)


def test_an_unreachable_database_says_where(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-socket-here"  # a socket directory without a server
    url = f"postgresql://{str(nowhere).replace('/', '%2F')}/eft"
    code, error = start(tmp_path, url, {"EFT_PG_USER": "eft", "EFT_PG_PASSWORD": "x"})
    assert code == EXIT_REGISTRY_UNAVAILABLE
    assert "cannot use the registry" in error["message"]
    assert "No such file or directory" in error["message"] or "connect" in error["message"]


def test_a_database_that_does_not_exist_is_named(postgres: PostgresCluster, tmp_path: Path) -> None:
    code, error = start(tmp_path, postgres.url("no_such_db"), postgres.server_env())
    assert code == EXIT_REGISTRY_UNAVAILABLE
    assert 'database "no_such_db" does not exist' in error["message"]


def test_a_schema_newer_than_the_server_is_refused(
    postgres: PostgresCluster, pg_database: str, pg_url: str, tmp_path: Path
) -> None:
    postgres.execute(
        pg_database, "CREATE TABLE eft_schema (version integer PRIMARY KEY, applied_at timestamptz)"
    )
    newer = len(MIGRATIONS) + 1
    postgres.execute(pg_database, "INSERT INTO eft_schema (version) VALUES ($1)", newer)
    code, error = start(tmp_path, pg_url, postgres.server_env())
    assert code == EXIT_REGISTRY_UNAVAILABLE
    assert f"schema version {newer}, newer than this server" in error["message"]
    assert "upgrade the server" in error["message"]
