"""PostgreSQL restarted under a running server: the clients that come while it is away
are cut (the server logs why and keeps running), and the server reconnects by itself
once it is back: nothing to restart, nothing lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hostile.helpers import wait_until
from tests.support.postgres import PostgresCluster
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file


def test_the_server_rides_out_a_postgresql_restart(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    tmp_path: Path,
) -> None:
    server = pg_server_factory()
    v3 = client_factory("hal", server.address)
    v4 = client_factory("ida", server.address)
    v4.protocol = 4
    source = write_random_file(tmp_path / "log.txt", 50_000, seed=4)
    assert v3.run([source]).returncode == 0
    assert v4.run([source]).returncode == 0

    postgres.restart()  # every pooled connection is cut
    for client in (v3, v4):
        run = client.run([source])
        assert run.returncode == 0, run.stderr
        assert "reconnected" in run.kinds()

    postgres.stop()
    try:
        # A client that comes now is cut without an answer (none would be true) and
        # retries, as after any dropped connection.
        retrying = v3.start([source])
        wait_until(
            lambda: any(r.get("event") == "registry_unreachable" for r in server.logs()),
            "the server to find the registry away",
        )
        assert server.proc is not None and server.proc.poll() is None
        assert not any(r.get("event") == "connection_crashed" for r in server.logs())
    finally:
        postgres.start()
    done = finish(retrying)  # its next attempt finds the database back
    assert done.returncode == 0, done.stderr
    assert "reconnected" in done.kinds()
    back = v4.run([source])
    assert back.returncode == 0, back.stderr
    assert "reconnected" in back.kinds()
