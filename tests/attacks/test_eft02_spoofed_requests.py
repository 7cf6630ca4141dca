"""EFT-02: the client id in the header and the verdicts are not authenticated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected, stored, v4_refusals
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
    if not result.succeeded and version == 3:
        assert all(answer == 1607 for _, answer in result.result["answers"])
    if not result.succeeded and version == 4:
        # Closed without a word (-1), before the record was even read; and the name
        # with another key: 1606 to log in, 1601 to register.
        assert [answer for _, answer in result.result["answers"]] == [-1] * 5
        assert result.result["intents"] == {"827": 1606, "825": 1601}
        # Message 1 was not a hello; then four record headers with another client's id.
        assert v4_refusals(server) == ["handshake"] + ["bad_record"] * 4
    stored_file = stored(server, version, victim.client_id_hex, "report.txt")
    assert stored_file.read_bytes() == report.read_bytes()


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

    # Version 4: one reconnect after the silent close, whose 900 is rewritten too.
    run = victim.run([report], *(("--retries", "1") if version == 4 else ()))
    result = mitm.finish()

    assert result.succeeded is expected("EFT-02 verdict rewritten in transit", version)
    stored_file = stored(server, version, victim.client_id_hex, "report.txt")
    if result.succeeded:
        assert run.returncode == 0, run.stderr
        assert "file_verified" in run.kinds()  # the client believes it
        assert not stored_file.exists()
    else:
        # The server closed after each rewritten record, without an answer; the client
        # never reported the file stored, and the server did not store it.
        assert result.result["rewritten"] >= 1
        assert result.result["server_answers_after_tamper"] == []
        if version == 4:
            assert v4_refusals(server) == ["bad_record"] * result.result["rewritten"]
        assert run.returncode != 0 and "file_verified" not in run.kinds()
        assert not stored_file.exists()
