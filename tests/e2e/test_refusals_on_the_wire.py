"""Refusals a real server makes, seen on the wire, in its log and in its database.

Each test here failed against a planted bug that the rest of the suite let through
(docs/TESTING.md, "Mutation testing"): a 900 or 902 naming another file than the one
just sent was accepted; an 826 naming another client than the one registered was
accepted; ``LastSeen`` was not written on a reconnect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_protocol.wire import (
    Acknowledged,
    FileReceived,
    PublicKeyAccepted,
    Reconnected,
    ServerError,
)
from tests.hostile.helpers import (
    Peer,
    encrypted,
    field255,
    packet,
    public_der,
    rejections_of,
    request,
    wait_until,
)
from tests.support.processes import ServerProcess


def _last_seen(data_dir: Path, client_id: bytes) -> float:
    uri = f"file:{data_dir / 'eft.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        ((last_seen,),) = db.execute("SELECT LastSeen FROM clients WHERE ID = ?", (client_id,))
    return float(last_seen)


def _rejections(server: ServerProcess, peer: Peer, expected: list[str]) -> None:
    wait_until(
        lambda: rejections_of(server, peer.local) == expected,
        f"the server's log to show {expected} (it shows {rejections_of(server, peer.local)})",
    )


@pytest.mark.parametrize("verdict", [900, 902])
def test_a_verdict_for_another_file_is_refused_and_the_sent_file_awaits_its_own(
    server: ServerProcess, verdict: int
) -> None:
    peer = Peer(server.address)
    peer.handshake("verdicts")
    content = b"the file that was sent\n" * 100
    sealed = encrypted(peer.aes_key, content)
    peer.send(packet(peer.client_id, b"sent.txt", sealed, orig_size=len(content)))
    assert isinstance(peer.receive(), FileReceived)

    peer.send(request(verdict, field255(b"other.txt"), peer.client_id))
    assert isinstance(peer.receive(), ServerError)
    _rejections(server, peer, ["out_of_order"])
    stored = server.data_dir / "files" / peer.client_id.hex()
    assert not (stored / "other.txt").exists()
    assert not (stored / "sent.txt").exists()

    # The connection goes on, and the verdict for the file sent is still the one awaited.
    peer.send(request(verdict, field255(b"sent.txt"), peer.client_id))
    assert isinstance(peer.receive(), Acknowledged)
    if verdict == 900:
        assert (stored / "sent.txt").read_bytes() == content
    else:
        assert not (stored / "sent.txt").exists()
    peer.close()


def test_a_key_request_under_another_name_is_a_name_mismatch(server: ServerProcess) -> None:
    peer = Peer(server.address)
    peer.register("keyholder")
    peer.send(request(826, field255(b"someone-else") + public_der(), peer.client_id))
    assert isinstance(peer.receive(), ServerError)
    _rejections(server, peer, ["name_mismatch"])
    # The registered name, on the same connection, is then accepted.
    peer.send(request(826, field255(b"keyholder") + public_der(), peer.client_id))
    assert isinstance(peer.receive(), PublicKeyAccepted)
    peer.close()


def test_a_reconnect_writes_last_seen(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    first = Peer(server.address)
    first.handshake("returning")  # 1602 arrives once its change is committed
    registered_at = _last_seen(server.data_dir, first.client_id)
    first.close()

    again = Peer(server.address)
    again.send(request(827, field255(b"returning"), first.client_id))
    assert isinstance(again.receive(), Reconnected)  # ... and so does 1605
    # Not compared by order: the wall clock may be stepped back between the two.
    assert _last_seen(server.data_dir, first.client_id) != registered_at
    again.close()

    # And it is read back: after a restart the client still reconnects.
    server.restart()
    third = Peer(server.address)
    third.send(request(827, field255(b"returning"), first.client_id))
    assert isinstance(third.receive(), Reconnected)
    third.close()
