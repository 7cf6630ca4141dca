"""EFT-13: names are first come, first served, and 1601 tells which exist."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, ServerProcess, finish


def test_enumeration_finds_registered_names_and_squats_the_free_ones(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    users = [victims(name, server.address).start([note]) for name in ("alice", "bob")]
    assert all(finish(user).returncode == 0 for user in users)

    result = attacks.run(
        "enumerate-names", "--target", server.address, "--names", "alice,bob,carol"
    )

    assert result.succeeded is expected("EFT-13 names enumerated and squatted", version)
    if result.succeeded:
        assert result.result["existing"] == ["alice", "bob"]
        assert list(result.result["squatted"]) == ["carol"]
        carol = victims("carol", server.address).run([note])
        assert carol.returncode == ExitCode.REGISTRATION_REFUSED


def test_after_a_restart_of_a_forgetful_server_a_returning_user_is_locked_out(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """The original design keeps clients in memory only (our ``--ephemeral``)."""
    server = target("--ephemeral")
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    alice = victims("alice", server.address)
    assert alice.run([note]).returncode == 0
    server.restart()

    result = attacks.run("enumerate-names", "--target", server.address, "--names", "alice")
    run = alice.run([note])

    squatted = "alice" in result.result["squatted"]
    assert squatted is expected("EFT-13 names freed by a restart", version)
    if squatted:
        # v3: 1606, unauthenticated: the client keeps its identity and stops (exit 9,
        # docs/IDENTITY.md); v4: 1606 for its key, then 825 with it: 1601, the name is
        # the squatter's.
        assert "reconnect_denied" in run.kinds()
        refused = ExitCode.IDENTITY if version == 3 else ExitCode.REGISTRATION_REFUSED
        assert run.returncode == refused, run.stderr
