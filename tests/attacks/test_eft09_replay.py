"""EFT-09: replay of a recorded session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, Recorded, expected, stored, v4_refusals
from tests.support.processes import ClientDir, ServerProcess


def test_replay_on_the_victims_left_connection_rolls_a_file_back(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    old, new = tmp_path / "v1" / "contract.txt", tmp_path / "v2" / "contract.txt"
    old.parent.mkdir()
    new.parent.mkdir()
    old.write_bytes(b"price: 1000 EUR\n")
    new.write_bytes(b"price: 2500 EUR (renegotiated)\n")
    mitm = attacks.start(
        "replay", "--target", server.address, "--file", "contract.txt", "--nth", "1"
    )
    victim = victims("alice", mitm.address)

    run = victim.run([old, new])  # one session: the second upload replaces the first
    assert run.returncode == 0, run.stderr
    result = mitm.finish()

    assert result.succeeded is expected("EFT-09 replay on a hijacked connection", version)
    kept = stored(server, version, victim.client_id_hex, "contract.txt").read_bytes()
    assert kept == (old.read_bytes() if result.succeeded else new.read_bytes())
    if version == 4:
        assert result.result["answers"] == [-1]  # the counter moved on: closed, no answer
        assert v4_refusals(server) == ["bad_record"]


def test_replay_on_a_new_connection_fails_because_every_reconnect_gets_a_new_key(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    record: Callable[..., Recorded],
    tmp_path: Path,
) -> None:
    server = target()
    note = tmp_path / "note.txt"
    note.write_bytes(b"first version\n")
    first = record(server, "alice", [note])  # registers alice
    note.write_bytes(b"second version\n")
    recorded = record(server, "alice", [note])  # a reconnect session (827)
    assert "reconnected" in recorded.run.kinds()

    result = attacks.run("replay", "--target", server.address, "--recording", recorded.path)

    assert result.succeeded is expected("EFT-09 replay on a new connection", version)
    if version == 4:
        # A fresh message 2 for the replayed message 1; the replayed message 3 was made
        # for the old one: closed without an answer. (Version 3 stores junk about once
        # in 256 replays, when the replay decrypts to a valid padding: EFT-05.)
        assert result.result["answers"] == [1602, -1]
        assert v4_refusals(server) == ["handshake"]  # message 3 did not authenticate
        kept = stored(server, version, first.client.client_id_hex, "note.txt")
        assert kept.read_bytes() == b"second version\n"
