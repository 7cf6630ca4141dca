"""Real clients of both versions against servers whose registry is PostgreSQL: what
they store is in the database, survives a restart, and is seen by another server on
the same database (another replica)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.postgres import PostgresCluster
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def _client(factory: Callable[..., ClientDir], name: str, address: str, protocol: int) -> ClientDir:
    client = factory(name, address)
    client.protocol = protocol
    return client


def test_v3_register_upload_reconnect_and_restart(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    pg_database: str,
    tmp_path: Path,
) -> None:
    server = pg_server_factory()
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    assert listening["registry"] == "postgresql"
    client = _client(client_factory, "alice", server.address, 3)
    source = write_random_file(tmp_path / "report.pdf", 100_000, seed=1)
    first = client.run([source])
    assert first.returncode == 0, first.stderr
    assert "registered" in first.kinds()
    client_id = bytes.fromhex(client.client_id_hex)
    assert server.stored(client.client_id_hex, "report.pdf").read_bytes() == source.read_bytes()
    (row,) = postgres.fetch(pg_database, "SELECT * FROM clients")
    assert (row["id"], row["name"]) == (client_id, "alice")
    assert row["public_key"] is not None
    assert row["aes_key"] is None  # never stored (docs/SECURITY.md, EFT-18)
    (file,) = postgres.fetch(pg_database, "SELECT * FROM files")
    assert (file["client_id"], file["file_name"]) == (client_id, "report.pdf")
    assert file["size"] == 100_000
    assert file["verified"] is True

    second = client.run([source])
    assert second.returncode == 0, second.stderr
    assert "reconnected" in second.kinds()
    (seen,) = postgres.fetch(pg_database, "SELECT last_seen FROM clients")
    assert seen["last_seen"] > row["last_seen"]

    server.restart()
    third = client.run([source])
    assert third.returncode == 0, third.stderr
    assert "reconnected" in third.kinds()
    assert client.client_id_hex == client_id.hex()
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    assert listening["clients"] == 1


def test_v4_register_upload_log_in_and_restart(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    postgres: PostgresCluster,
    pg_database: str,
    tmp_path: Path,
) -> None:
    server = pg_server_factory()
    client = _client(client_factory, "vera", server.address, 4)
    source = write_random_file(tmp_path / "plan.pdf", 300_000, seed=2)
    first = client.run([source])
    assert first.returncode == 0, first.stderr
    assert "registered" in first.kinds()
    (row,) = postgres.fetch(pg_database, "SELECT * FROM clients_v4")
    assert (row["client_id"].hex(), row["name"]) == (client.client_id_hex, "vera")
    assert len(row["static_key"]) == 32
    (file,) = postgres.fetch(pg_database, "SELECT * FROM files_v4")
    assert (file["file_name"], file["size"], file["digest_algorithm"]) == (
        "plan.pdf",
        300_000,
        "blake3",
    )
    server.restart()
    again = client.run([source])
    assert again.returncode == 0, again.stderr
    assert "registered" not in again.kinds()
    assert "reconnected" in again.kinds(), again.kinds()
    (seen,) = postgres.fetch(pg_database, "SELECT last_seen FROM clients_v4")
    assert seen["last_seen"] > row["last_seen"]


def test_a_client_registered_on_one_replica_is_known_to_the_other(
    pg_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    first = pg_server_factory(name="replica-a")
    second = pg_server_factory(name="replica-b")
    # Both replicas serve the same v4 identity in a deployment (a mounted secret); here
    # each has its own key, so the v4 client pins the first and is shown the second.
    source = write_random_file(tmp_path / "notes.txt", 10_000, seed=3)
    v3 = _client(client_factory, "bob", first.address, 3)
    assert v3.run([source]).returncode == 0
    v3.server = second.address
    run = v3.run([source])
    assert run.returncode == 0, run.stderr
    assert "reconnected" in run.kinds()
    taken = _client(client_factory, "bob-again", second.address, 3)
    taken.name = "bob"  # another identity asking for bob's name, on the other replica
    refused = taken.run([source])
    assert refused.returncode == 4, refused.stderr  # 1601: the name is taken
