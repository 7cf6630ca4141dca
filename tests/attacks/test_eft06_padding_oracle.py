"""EFT-06: the CBC padding oracle (1603 for valid padding, 1607 for invalid)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, Recorded, expected, stored, v4_refusals
from tests.support.processes import ClientDir, ServerProcess

SECRET = b"Meet me at the old mill at 23:15.\n"  # 34 bytes: 3 blocks


def test_padding_oracle_decrypts_a_captured_file_over_the_victims_left_connection(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    mitm = attacks.start("padding-oracle", "--target", server.address)
    secret = tmp_path / "meeting.txt"
    secret.write_bytes(SECRET)

    victim = victims("alice", mitm.address)
    run = victim.run([secret])
    assert run.returncode == 0, run.stderr
    result = mitm.finish()

    assert result.succeeded is expected("EFT-06 padding oracle on a hijacked connection", version)
    if result.succeeded:
        assert result.result["plaintext"] == SECRET.decode()
        assert result.result["cksum_matches"] is True
    if version == 4:
        # The altered record: the server closed the connection and sent nothing.
        assert result.result["answers"] == {"hijacked": 0}
        assert v4_refusals(server) == ["bad_record"]
        assert stored(server, version, victim.client_id_hex, "meeting.txt").read_bytes() == SECRET


def test_padding_oracle_under_a_spoofed_client_id_finds_no_oracle_on_our_server(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    record: Callable[..., Recorded],
    tmp_path: Path,
) -> None:
    """The protocol permits it; our server decrypts only under the connection's own key."""
    server = target()
    secret = tmp_path / "meeting.txt"
    secret.write_bytes(SECRET)
    recorded = record(server, "alice", [secret])
    assert recorded.run.returncode == 0

    result = attacks.run("padding-oracle", "--target", server.address, "--recording", recorded.path)

    assert result.succeeded is expected("EFT-06 padding oracle under a spoofed id", version)
    if not result.succeeded:
        assert "no oracle" in result.result["message"]
    if version == 4:
        assert result.result["answers"] == {"victim_id": 0, "own_id": 0}
        assert v4_refusals(server) == ["bad_record", "bad_record"]  # header; tag
