"""EFT-01: no server authentication; a man in the middle reads the file.

Version 4: the server proves its static key, so the man in the middle must present its
own. A client that trusts the real key (pinned at an earlier contact, or configured)
stops before it says who it is; a client meeting the attacker at its very first contact,
with no configured fingerprint, trusts the attacker's key (trust on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected, fingerprint_of, stored
from tests.support.processes import ClientDir, ServerProcess

SALARIES = b"name,salary\nalice,98000\nbob,87000\n" * 20


def test_mitm_swaps_keys_and_reads_the_file_while_both_sides_report_success(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    loot = tmp_path / "loot"
    # Version 4: relay alice's first, clean contact (she pins the real key), then play
    # the server for her next run and for bob, who was given the fingerprint beforehand.
    v4_args = ("--relay-first", "1", "--connections", "2") if version == 4 else ()
    mitm = attacks.start("mitm-key", "--target", server.address, "--out", loot, *v4_args)
    secret = tmp_path / "salaries.csv"
    secret.write_bytes(SALARIES)
    victim = victims("alice", mitm.address)
    if version == 4:
        assert victim.run([secret]).returncode == 0  # the clean contact
    run = victim.run([secret])
    configured = None
    if version == 4:
        configured = victims("bob", mitm.address).run(
            [secret], "--server-fingerprint", fingerprint_of(server)
        )
    result = mitm.finish()

    assert result.succeeded is expected("EFT-01 mitm key swap", version)
    if result.succeeded:
        assert (loot / "salaries.csv").read_bytes() == secret.read_bytes()
        # Transparent: the client verified its file and the server stored it intact.
        assert run.returncode == 0, run.stderr
        assert "file_verified" in run.kinds()
        stored_file = stored(server, version, victim.client_id_hex, "salaries.csv")
        assert stored_file.read_bytes() == secret.read_bytes()
    else:
        # Both clients stopped after our message 2 (exit 7, both fingerprints named)
        # and never sent message 3: the attacker learnt no name, no key, no file.
        assert configured is not None
        for stopped in (run, configured):
            assert stopped.returncode == ExitCode.SERVER_IDENTITY, stopped.stderr
            assert fingerprint_of(server) in stopped.stderr
            assert result.result["fingerprint"] in stopped.stderr
        assert result.result["impersonated"] == 2
        assert result.result["message_3"] == 0 and result.result["learned"] == []
        assert not loot.exists()


@pytest.mark.parametrize("version", [4], ids=["v4"], indirect=True)
def test_mitm_at_the_first_contact_of_a_client_without_a_configured_fingerprint(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """Trust on first use trusts whoever answers first. (Version 3 has no server key to
    trust at all: the test above is its first contact, every time.)"""
    server = target()
    loot = tmp_path / "loot"
    mitm = attacks.start("mitm-key", "--target", server.address, "--out", loot)
    secret = tmp_path / "salaries.csv"
    secret.write_bytes(SALARIES)
    victim = victims("alice", mitm.address)

    run = victim.run([secret])
    result = mitm.finish()

    assert result.succeeded is expected("EFT-01 mitm at first contact", version)
    if result.succeeded:
        assert (loot / "salaries.csv").read_bytes() == secret.read_bytes()
        assert run.returncode == 0, run.stderr
        # The client pinned the attacker's key for this address; the file never reached
        # the real server, and the real server will look like an impostor to this client.
        pinned = (victim.path / "known_servers").read_text().split()
        assert pinned == [mitm.address, result.result["fingerprint"]]
        assert fingerprint_of(server) != result.result["fingerprint"]
        assert not stored(server, version, victim.client_id_hex, "salaries.csv").exists()
