"""EFT-19: an impersonated server answers 1606 to make the client throw its identity away.

Version 3 still lets anyone on the path answer 1606; our clients no longer obey it (they
keep the identity and stop with exit 9, docs/IDENTITY.md), so the attack fails against
them. ``tests/e2e/test_identity_lifecycle.py`` runs the same forged 1606 against the C++
client too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected, fingerprint_of
from tests.support.processes import ClientDir, ServerProcess


def test_a_forged_1606_neither_replaces_the_clients_identity_nor_locks_it_out(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    report = tmp_path / "report.txt"
    report.write_bytes(b"Q3 figures\n")
    victim = victims("alice", server.address)
    assert victim.run([report]).returncode == 0
    old_id = victim.client_id_hex
    identity_file = victim.path / ("me.info" if version == 3 else "me4.info")
    before = identity_file.read_bytes()

    if version == 3:
        impostor = attacks.start("forged-denial")
        extra: tuple[str, ...] = ("--retries", "0")  # the impostor hangs up: no retries
    else:
        # The strongest impostor: a real server that does not know alice and says so.
        other = target(name="impostor")
        impostor = attacks.start("forged-denial", "--target", other.address)
        # The impostor listens at an address of its own; at the real address the pin in
        # known_servers does this, here the fingerprint given as a distributed one is.
        extra = ("--server-fingerprint", fingerprint_of(server))
    victim.server = impostor.address
    fooled = victim.run([report], *extra)
    result = impostor.finish()

    assert result.succeeded is expected(
        "EFT-19 forged 1606 replaces the client's identity", version
    )
    victim.server = server.address
    back = victim.run([report])
    if version == 3:
        # The client stops at the 1606 (exit 9): no 825, so no forged 1600 to take.
        assert fooled.returncode == ExitCode.IDENTITY, fooled.stderr
        assert result.result["old_id"] == old_id
        assert result.result["requests"] == [827]
        assert identity_file.read_bytes() == before
        # The real server still knows it: nothing was lost.
        assert back.returncode == 0 and "reconnected" in back.kinds(), back.stderr
    else:
        assert fooled.returncode == ExitCode.SERVER_IDENTITY, fooled.stderr
        assert result.result["requests"] == [826]  # message 1 only: no message 3
        assert identity_file.read_bytes() == before
        assert back.returncode == 0 and "reconnected" in back.kinds()
