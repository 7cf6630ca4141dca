"""The registry refuses a write: the client is told, memory forgets it, the server goes on.

A real server process on a real database; the refusal is a trigger that another
connection adds to the server's database (SQLite sees schema changes at once), failing
the writes for one name only, so everyone else is served as usual meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from eft_protocol.wire import Registered, ServerError
from tests.hostile.helpers import Peer, field255, request
from tests.support.processes import ServerProcess


def refuse_writes(data_dir: Path, table: str, name: str) -> None:
    with sqlite3.connect(data_dir / "eft.sqlite3") as db:
        db.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN NEW.Name = '{name}' "
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
