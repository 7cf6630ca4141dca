"""Where the PostgreSQL registry is and who the server is there: ``--registry URL``
plus credentials from the environment, never from the command line (a command line is
visible to every user of the machine through ``ps``).

The URL names the server and the database only: ``postgresql://host[:port]/dbname``
(``postgres://`` too); a unix socket's directory is a percent-encoded host, as libpq
takes it (``postgresql://%2Fvar%2Frun%2Fpostgresql/eft``). The user comes from
``EFT_PG_USER`` (else libpq's ``PGUSER``, else the server's login name), the password
from ``EFT_PG_PASSWORD_FILE`` (a file holding it: the way a container mounts a secret),
``EFT_PG_PASSWORD``, or libpq's password file (``PGPASSFILE``, ``~/.pgpass``), which
asyncpg reads itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432


class RegistryUrlError(ValueError):
    """``--registry`` or its credentials cannot be used; ``str()`` says why and what to do."""


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    database: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """For messages and logs: never the password."""
        return f"postgresql://{quote(self.host, safe='')}:{self.port}/{self.database}"


def parse_registry_url(url: str, environ: Mapping[str, str]) -> PgSettings:
    """The settings for ``url``, credentials from ``environ``; RegistryUrlError if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:  # a port that is not a number, or out of range
        raise RegistryUrlError(f"--registry {url!r}: {exc}") from exc
    # Not parts.hostname: it lowercases, and a socket directory's name keeps its case.
    host = unquote(parts.netloc.rpartition("@")[2].split(":")[0])
    if parts.scheme.lower() not in SCHEMES:
        raise RegistryUrlError(f"--registry {url!r}: expected postgresql://host[:port]/dbname")
    if parts.username is not None or parts.password is not None:
        raise RegistryUrlError(
            "--registry must not hold a user or a password (the command line is visible to "
            "every user of the machine): set EFT_PG_USER and EFT_PG_PASSWORD_FILE "
            "(or EFT_PG_PASSWORD, or a PGPASSFILE)"
        )
    database = parts.path.lstrip("/")
    if not host or not database or "/" in database:
        raise RegistryUrlError(
            f"--registry {url!r}: expected postgresql://host[:port]/dbname "
            "(a host and one database name)"
        )
    if parts.query or parts.fragment:
        raise RegistryUrlError(f"--registry {url!r}: options in the URL are not supported")
    return PgSettings(host, port, database, _user(environ), _password(environ))


def _user(environ: Mapping[str, str]) -> str | None:
    return environ.get("EFT_PG_USER") or None  # else asyncpg: PGUSER, then the login name


def _password(environ: Mapping[str, str]) -> str | None:
    path = environ.get("EFT_PG_PASSWORD_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryUrlError(f"EFT_PG_PASSWORD_FILE {path}: cannot read it: {exc}") from exc
        password = text.rstrip("\r\n")  # the newline an editor or `echo` adds is not in it
        if not password:
            raise RegistryUrlError(f"EFT_PG_PASSWORD_FILE {path} is empty")
        return password
    return environ.get("EFT_PG_PASSWORD") or None  # else asyncpg: PGPASSWORD, PGPASSFILE
