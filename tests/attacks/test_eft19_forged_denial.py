"""EFT-19: an impersonated server answers 1606, and the client throws its identity away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected, fingerprint_of
from tests.support.processes import ClientDir, ServerProcess


def test_a_forged_1606_replaces_the_clients_identity_and_locks_it_out_of_its_name(
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
        assert fooled.returncode != 0  # the impostor hung up after the 826
        assert result.result["old_id"] == old_id
        assert victim.client_id_hex == result.result["forged_id"] != old_id
        # At the real server the forged id is unknown (1606) and alice's name is still
        # held by the id the client no longer has (1601): locked out.
        assert back.returncode == ExitCode.REGISTRATION_REFUSED, back.stderr
        assert "reconnect_denied" in back.kinds()
    else:
        assert fooled.returncode == ExitCode.SERVER_IDENTITY, fooled.stderr
        assert result.result["requests"] == [826]  # message 1 only: no message 3
        assert identity_file.read_bytes() == before
        assert back.returncode == 0 and "reconnected" in back.kinds()
