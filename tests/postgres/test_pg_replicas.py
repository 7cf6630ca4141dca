"""Two servers on one database, as two replicas behind a load balancer: the database
decides what one server alone decided in memory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from eft_protocol.wire import RegisterRequest
from eft_server.pg_schema import MIGRATION_LOCK, MIGRATIONS
from tests.support.postgres import PostgresCluster
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file
from tests.support.raw_client import RawClient

ROUNDS = 12
V4_ROUNDS = 3
EXIT_NAME_REFUSED = 4  # the clients' exit code for a refused registration (README)


def _register_at_once(addresses: list[str], name: str) -> list[object]:
    """One 825 for ``name`` to each address, sent together (a barrier, after connecting):
    each connection's answer code, or the exception that took its place."""
    clients = [RawClient(address) for address in addresses]
    barrier = threading.Barrier(len(clients))
    frame = RegisterRequest(bytes(16), name).encode()
    answers: list[object] = []

    def register(client: RawClient) -> None:
        barrier.wait()  # neither replica can have seen the other's 825
        try:
            client.send(frame)
            answers.append(int(client.receive().code))
        except Exception as exc:  # the assertion shows it
            answers.append(exc)

    threads = [threading.Thread(target=register, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return answers


def test_migrations_run_once_when_two_servers_start_together(
    pg_server_factory: Callable[..., ServerProcess],
    postgres: PostgresCluster,
    pg_database: str,
) -> None:
    servers = [pg_server_factory(name=f"replica-{n}", start=False) for n in range(2)]
    barrier = threading.Barrier(len(servers))
    errors: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        barrier.wait()
        try:
            server.start()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    applied = [
        next(r for r in server.logs() if r.get("event") == "registry_migrated")
        for server in servers
    ]
    assert sorted(r["migrations_applied"] for r in applied) == [0, len(MIGRATIONS)]
    assert {r["schema_version"] for r in applied} == {len(MIGRATIONS)}
    rows = postgres.fetch(pg_database, "SELECT version FROM eft_schema ORDER BY version")
    assert [row["version"] for row in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_the_same_name_registered_on_two_replicas_at_once_is_won_by_exactly_one(
    pg_server_factory: Callable[..., ServerProcess],
    postgres: PostgresCluster,
    pg_database: str,
) -> None:
    replicas = [pg_server_factory(name=f"replica-{n}") for n in range(2)]
    for round_number in range(ROUNDS):
        name = f"racer-{round_number}"
        codes = _register_at_once([replica.address for replica in replicas], name)
        assert sorted(codes) == [1600, 1601], (round_number, codes)
        rows = postgres.fetch(pg_database, "SELECT name FROM clients WHERE name = $1", name)
        assert len(rows) == 1
    # How often the database (not a replica's own read) decided: logged, for the report.
    lost = [
        r
        for replica in replicas
        for r in replica.logs()
        if r.get("event") == "registration_refused" and r.get("reason") == "taken_meanwhile"
    ]
    print(f"{len(lost)} of {ROUNDS} rounds decided by the database's unique constraint")


def test_v4_clients_racing_for_one_name_on_two_replicas_one_wins(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    pg_database: str,
    tmp_path: Path,
) -> None:
    replicas = [pg_server_factory(name=f"replica-{n}") for n in range(2)]
    source = write_random_file(tmp_path / "race.bin", 1000, seed=6)
    for round_number in range(V4_ROUNDS):
        name = f"v4-racer-{round_number}"
        clients = []
        for number, replica in enumerate(replicas):
            client = client_factory(f"{name}-{number}", replica.address)
            client.name, client.protocol = name, 4  # two identities, one name
            clients.append(client)
        runs = [finish(proc) for proc in [client.start([source]) for client in clients]]
        codes = sorted(run.returncode for run in runs)
        assert codes == [0, EXIT_NAME_REFUSED], [run.stderr for run in runs]
        rows = postgres.fetch(pg_database, "SELECT 1 FROM clients_v4 WHERE name = $1", name)
        assert len(rows) == 1
    lost = [
        r
        for replica in replicas
        for r in replica.logs()
        if r.get("event") == "registration_refused" and r.get("reason") == "taken_meanwhile"
    ]
    print(f"{len(lost)} of {V4_ROUNDS} v4 rounds decided by the database's unique constraint")


def test_clients_of_both_versions_spread_over_two_replicas_all_arrive(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    pg_database: str,
    tmp_path: Path,
) -> None:
    """Several clients at once, each replica taking half of each version: every file
    verified and recorded once, every client once, whichever replica served it."""
    replicas = [pg_server_factory(name=f"replica-{n}") for n in range(2)]
    jobs = []
    for number in range(8):
        client = client_factory(f"spread-{number}", replicas[number % 2].address)
        client.protocol = 3 if number < 4 else 4
        source = write_random_file(tmp_path / f"s{number}.bin", 20_000 + number, seed=number)
        jobs.append(client.start([source]))
    for proc in jobs:
        run = finish(proc)
        assert run.returncode == 0, run.stderr
    v3 = postgres.fetch(pg_database, "SELECT count(*) AS n FROM files")
    v4 = postgres.fetch(pg_database, "SELECT count(*) AS n FROM files_v4")
    clients = postgres.fetch(
        pg_database,
        "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM clients_v4) AS n",
    )
    assert (v3[0]["n"], v4[0]["n"], clients[0]["n"]) == (4, 4, 8)


def test_a_replica_waits_while_another_holds_the_migration_lock(
    pg_server_factory: Callable[..., ServerProcess],
    postgres: PostgresCluster,
    pg_database: str,
) -> None:
    """The lock held here stands for a replica migrating: the server waits on it (it
    shows in pg_locks, not granted) and starts, migrating, once it is released."""

    async def hold_lock_while_a_server_starts() -> ServerProcess:
        holder = await postgres.connect(pg_database)
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        server = pg_server_factory(start=False)
        starting = asyncio.create_task(asyncio.to_thread(server.start))
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        deadline = time.monotonic() + 60
        while await holder.fetchval(waiting) == 0:
            assert not starting.done(), "the server started without the lock"
            assert time.monotonic() < deadline, "the server never waited on the lock"
            await asyncio.sleep(0.02)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await holder.close()
        return await starting

    server = asyncio.run(hold_lock_while_a_server_starts())
    migrated = next(r for r in server.logs() if r.get("event") == "registry_migrated")
    assert migrated["migrations_applied"] == len(MIGRATIONS)
