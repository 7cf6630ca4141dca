"""EFT-03: a new client's identity is claimed by an 826 from another connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected, stored
from tests.support.processes import ClientDir, ServerProcess


def test_an_eavesdropper_racing_the_victims_826_owns_its_identity(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    tap = attacks.start(
        "claim-key", "--target", server.address, "--plant", "planted.txt", "--name", "alice"
    )
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")
    victim = victims("alice", tap.address)

    run = victim.run([report])
    result = tap.finish()

    assert result.succeeded is expected("EFT-03 key claimed from another connection", version)
    if result.succeeded:
        victim_id = result.result["client_id"]
        assert result.result["planted"] is True
        planted = server.stored(victim_id, "planted.txt").read_text()
        assert planted == "planted by the attacker as alice\n"
        # The victim's own 826 was refused; its client gave up without storing anything.
        assert result.result["victim_826_answer"] == 1607
        assert run.returncode != 0
        assert not server.stored(victim_id, "report.txt").exists()
    else:
        # Our server takes an 826 only on the connection that registered the id: the
        # attacker's was refused, the victim's went through and its file is stored.
        # Version 4: the identity is the key, so there is nothing to claim.
        assert run.returncode == 0, run.stderr
        stored_file = stored(server, version, victim.client_id_hex, "report.txt")
        assert stored_file.read_bytes() == report.read_bytes()
    if version == 4:
        assert result.result["attempts"] == {
            "spliced_message_3": -1,  # the victim's message 3 on our handshake: closed
            "login_as_name_before": 1606,
            "register_name_after": 1601,
            "login_as_name_after": 1606,
        }
        assert result.result["client_id"] == victim.client_id_hex
