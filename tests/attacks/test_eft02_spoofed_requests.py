"""EFT-02: the client id in the header and the verdicts are not authenticated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, ServerProcess


def test_spoofed_client_id_on_another_connection_is_refused_by_our_server(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")
    victim = victims("alice", server.address)
    assert victim.run([report]).returncode == 0

    result = attacks.run(
        "spoof-id",
        "--target",
        server.address,
        "--client-id",
        victim.client_id_hex,
        "--name",
        "alice",
        "--file",
        "report.txt",
    )

    assert result.succeeded is expected("EFT-02 spoofed id on another connection", version)
    if not result.succeeded:
        assert all(answer == 1607 for _, answer in result.result["answers"])
    stored = server.stored(victim.client_id_hex, "report.txt")
    assert stored.read_bytes() == report.read_bytes()


def test_verdict_rewritten_in_transit_aborts_a_file_the_client_reports_stored(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    mitm = attacks.start("spoof-id", "--mitm", "--target", server.address)
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")
    victim = victims("alice", mitm.address)

    run = victim.run([report])
    result = mitm.finish()

    assert result.succeeded is expected("EFT-02 verdict rewritten in transit", version)
    if result.succeeded:
        assert run.returncode == 0, run.stderr
        assert "file_verified" in run.kinds()  # the client believes it
        assert not server.stored(victim.client_id_hex, "report.txt").exists()
