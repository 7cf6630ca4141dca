"""The registry refuses a write: the client is told, memory forgets it, the server goes on.

A real server process on a real database; the refusal is a trigger that another
connection adds to the server's database (SQLite sees schema changes at once), failing
the writes for one name only, so everyone else is served as usual meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from eft_protocol.wire import Registered, ServerError
from tests.hostile.helpers import Peer, field255, request
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def refuse_writes(data_dir: Path, table: str, name: str, column: str = "Name") -> None:
    with sqlite3.connect(data_dir / "eft.sqlite3") as db:
        db.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
            f"WHEN NEW.{column} = '{name}' "
            "BEGIN SELECT RAISE(ABORT, 'injected: the registry refused the write'); END"
        )


def accept_writes(data_dir: Path, table: str) -> None:
    with sqlite3.connect(data_dir / "eft.sqlite3") as db:
        db.execute(f"DROP TRIGGER refuse_{table}")


def test_a_v3_registration_the_registry_refused_is_answered_1607_and_the_name_stays_free(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    bystander = Peer(server.address)
    bystander.handshake("bystander")  # a connection in progress on the side
    refuse_writes(server.data_dir, "clients", "doomed")
    peer = Peer(server.address)
    peer.send(request(825, field255(b"doomed")))
    assert isinstance(peer.receive(), ServerError)
    peer.close()
    # The bystander is served meanwhile, on its open connection.
    bystander.send_file("during.txt", b"stored while another registration failed")
    accept_writes(server.data_dir, "clients")
    # Nothing was stored, so the name is free at once (it stayed taken for 60 s).
    again = Peer(server.address)
    again.send(request(825, field255(b"doomed")))
    assert isinstance(again.receive(), Registered)
    again.close()
    bystander.close()


def test_a_v4_registration_the_registry_refused_is_reported_as_a_storage_error(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The refused 1600 was sealed, then dropped: the old server sealed its 1607 with the
    next nonce, and the client saw an answer that failed authentication (exit 6)."""
    server = server_factory()
    refuse_writes(server.data_dir, "clients_v4", "doomed")
    client = ClientDir(tmp_path / "doomed", "doomed", server.address, protocol=4)
    source = write_random_file(tmp_path / "a.bin", 1000, seed=1)
    run = client.run([source], "--retries", "0")
    assert run.returncode == ExitCode.SERVER_STORAGE, run.stderr
    assert "registry refused the write" in run.stderr
    # The key was saved before message 3 (docs/IDENTITY.md) and a storage error is not a
    # refusal of the name: the key is kept and registers at the next run.
    kept = (client.path / "me4.info").read_bytes()
    accept_writes(server.data_dir, "clients_v4")
    again = client.run([source])  # the name is free: nothing was kept in memory either
    assert again.returncode == 0, again.stderr
    assert "registered" in again.kinds()
    assert (client.path / "me4.info").read_bytes() == kept


def test_a_v4_file_record_the_registry_refused_is_reported_and_the_next_file_stored(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    client = ClientDir(tmp_path / "vera", "vera", server.address, protocol=4)
    first = write_random_file(tmp_path / "first.bin", 1000, seed=1)
    assert client.run([first]).returncode == 0
    refuse_writes(server.data_dir, "files_v4", "doomed.bin", column="FileName")
    doomed = write_random_file(tmp_path / "doomed.bin", 3000, seed=2)
    run = client.run([doomed], "--retries", "0")
    assert run.returncode == ExitCode.SERVER_STORAGE, run.stderr
    assert "file_verified" not in run.kinds()
    # The same server, no restart: the next file is stored.
    later = write_random_file(tmp_path / "later.bin", 2000, seed=3)
    after = client.run([later])
    assert after.returncode == 0, after.stderr
    stored = server.data_dir / "v4" / "files" / client.client_id_hex
    assert (stored / "later.bin").read_bytes() == later.read_bytes()
