"""EFT-07: no integrity. CBC bit flipping, and a linear CRC kept equal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from eft_protocol.cksum import cksum
from tests.attacks.conftest import Attacks, expected, stored, v4_refusals
from tests.support.processes import ClientDir, ServerProcess

HEADER = b"PAYMENT ORDER  \n" * 64  # 1 KiB of boilerplate the attacker knows
ORDER = b"PAY TO: alice   \n"  # at offset 1024, i.e. block 64


def test_mitm_changes_the_payee_and_the_server_and_client_agree_on_the_crc(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    document = tmp_path / "order.txt"
    document.write_bytes(HEADER + ORDER + b"amount: 100 EUR, reference 42\n" * 100)
    mitm = attacks.start(
        "bitflip",
        "--target",
        server.address,
        "--offset",
        "1024",
        "--known",
        "PAY TO: alice   ",
        "--replace",
        "PAY TO: mallory ",
    )
    victim = victims("alice", mitm.address)

    # Version 4: the altered record ends the connection; the client reconnects once.
    run = victim.run([document], *(("--retries", "1") if version == 4 else ()))
    result = mitm.finish()

    assert result.succeeded is expected("EFT-07 bit flip with the CRC kept equal", version)
    if result.succeeded:
        assert run.returncode == 0, run.stderr
        assert "crc_mismatch" not in run.kinds()  # the client saw its own CRC: one attempt
        kept = stored(server, version, victim.client_id_hex, "order.txt").read_bytes()
        assert kept[1024:1040] == b"PAY TO: mallory "
        assert kept != document.read_bytes()
        assert cksum(kept) == cksum(document.read_bytes())
    if version == 4:
        # The data record with the payee flipped: the server closed, saying nothing.
        # The resumed upload's 1603 with a flipped byte: the client stopped (exit 6)
        # without a verdict. Nothing was stored, altered or not.
        assert result.result["altered_828"] == result.result["altered_1603"] == 1
        assert result.result["server_after_altered_828"] == []
        assert result.result["client_after_altered_1603"] == []
        assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
        assert "authentication" in run.stderr
        assert not stored(server, version, victim.client_id_hex, "order.txt").exists()
        assert v4_refusals(server) == ["bad_record"]  # the tag of the altered record
