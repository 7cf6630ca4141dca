"""``--registry postgresql://...`` and its credentials: what is accepted, and what is
refused before any connection is tried (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_server.pg_connect import RegistryUrlError, parse_registry_url


def test_host_port_database_and_credentials_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")  # the newline `echo` adds is not part of it
    env = {"EFT_PG_USER": "eft", "EFT_PG_PASSWORD_FILE": str(secret), "EFT_PG_PASSWORD": "x"}
    settings = parse_registry_url("postgresql://db.internal:6543/eft", env)
    assert (settings.host, settings.port, settings.database) == ("db.internal", 6543, "eft")
    assert (settings.user, settings.password) == ("eft", "s3cret")  # the file wins
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.where


def test_defaults_are_left_to_libpq_conventions() -> None:
    settings = parse_registry_url("postgres://db/eft", {})
    assert (settings.port, settings.user, settings.password) == (5432, None, None)


def test_a_unix_socket_directory_keeps_its_case() -> None:
    settings = parse_registry_url("postgresql://%2Ftmp%2FPgSock:5432/eft", {})
    assert settings.host == "/tmp/PgSock"
    assert settings.where == "postgresql://%2Ftmp%2FPgSock:5432/eft"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://u:p@db/eft", "must not hold a user or a password"),
        ("postgresql://u@db/eft", "must not hold a user or a password"),
        ("postgresql://db", "a host and one database name"),
        ("postgresql:///eft", "a host and one database name"),
        ("postgresql://db/a/b", "a host and one database name"),
        ("postgresql://db:x/eft", "--registry"),
        ("postgresql://db/eft?sslmode=require", "options in the URL"),
        ("mysql://db/eft", "expected postgresql://"),
    ],
)
def test_unusable_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(RegistryUrlError, match=why.replace("?", r"\?")):
        parse_registry_url(url, {})


def test_a_password_file_that_cannot_be_used_is_named(tmp_path: Path) -> None:
    with pytest.raises(RegistryUrlError, match="cannot read it"):
        parse_registry_url("postgresql://db/eft", {"EFT_PG_PASSWORD_FILE": str(tmp_path / "no")})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(RegistryUrlError, match="is empty"):
        parse_registry_url("postgresql://db/eft", {"EFT_PG_PASSWORD_FILE": str(empty)})
