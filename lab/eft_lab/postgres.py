"""A real PostgreSQL cluster, for the tests (one per test session, a database per test,
tests/support/postgres.py) and for ``eft-lab --servers N`` (the replicas' registry).

Debian's ``postgresql`` package (``sudo make system-deps``; CI installs it): ``initdb``
and ``postgres`` from ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as
root, so as root the cluster runs as the ``postgres`` user (``runuser``), in a directory
of its own under /tmp (root's pytest folders are unreadable to that user). It listens on
a unix socket in that directory only: no TCP port to allocate, none to collide with.
``fsync=off``: a test database needs no durability against power loss, only speed.
Password authentication (scram) as on a real deployment: the servers under test get
their credentials the way an operator gives them (``EFT_PG_USER``,
``EFT_PG_PASSWORD_FILE``). Stopped by its PID (``postmaster.pid``), never by name.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import asyncpg

SUPERUSER = "eft"
PORT = 5432  # only the socket's file name: .s.PGSQL.5432
START_TIMEOUT = 60.0


class PostgresMissing(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries, or PostgresMissing saying what to do."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise PostgresMissing(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "apt-get install postgresql, or sudo make system-deps"
        )
    return candidates[-1].parent


@dataclass
class PostgresCluster:
    root: Path
    bin_dir: Path
    password: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _databases: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        """For the servers under test (EFT_PG_PASSWORD_FILE): root's, mode 0600."""
        return self.root / "password"

    def url(self, database: str) -> str:
        return f"postgresql://{quote(str(self.root), safe='')}:{PORT}/{database}"

    def server_env(self) -> dict[str, str]:
        return {"EFT_PG_USER": SUPERUSER, "EFT_PG_PASSWORD_FILE": str(self.password_file)}

    @classmethod
    def create(cls) -> PostgresCluster:
        bin_dir = find_bin_dir()
        root = Path(tempfile.mkdtemp(prefix="eft-pg-", dir="/tmp"))
        cluster = cls(root, bin_dir)
        cluster.password_file.write_text(cluster.password + "\n")
        cluster.password_file.chmod(0o600)
        initdb_password = root / "initdb-password"
        initdb_password.write_text(cluster.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(initdb_password, "postgres", "postgres")
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={initdb_password}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        initdb_password.unlink()
        return cluster

    def _as_postgres(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", "postgres", "--", *command]

    def _run(self, program: str, *args: str) -> None:
        command = self._as_postgres([str(self.bin_dir / program), *args])
        done = subprocess.run(command, capture_output=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> PostgresCluster:
        self.starts += 1
        log = self.root / f"postgres.{self.starts}.log"
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=200",
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                self._as_postgres(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(log)
        return self

    def _wait_ready(self, log: Path) -> None:
        """Until postmaster.pid says "ready" (its status line: PostgreSQL's own signal
        that connections are accepted)."""
        assert self.proc is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: {log.read_text()}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.02)
        raise RuntimeError(f"postgres not ready after {START_TIMEOUT} s: {log.read_text()}")

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: sessions are cut, as on a restart)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.postmaster_pid(), signal.SIGINT)
            except (FileNotFoundError, ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.postmaster_pid(), signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self, prefix: str = "eft_test") -> str:
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        return name

    def execute(self, database: str, sql: str, *args: object) -> None:
        asyncio.run(self._execute(database, sql, *args))

    def fetch(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        return asyncio.run(self._fetch(database, sql, *args))

    async def _execute(self, database: str, sql: str, *args: object) -> None:
        connection = await self.connect(database)
        try:
            await connection.execute(sql, *args)
        finally:
            await connection.close()

    async def _fetch(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        connection = await self.connect(database)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    async def connect(self, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(self.root),
            port=PORT,
            user=SUPERUSER,
            password=self.password,
            database=database,
        )
