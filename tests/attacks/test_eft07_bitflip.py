"""EFT-07: no integrity. CBC bit flipping, and a linear CRC kept equal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_protocol.cksum import cksum
from tests.attacks.conftest import Attacks, expected
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

    run = victim.run([document])
    result = mitm.finish()

    assert result.succeeded is expected("EFT-07 bit flip with the CRC kept equal", version)
    if result.succeeded:
        assert run.returncode == 0, run.stderr
        assert "crc_mismatch" not in run.kinds()  # the client saw its own CRC: one attempt
        stored = server.stored(victim.client_id_hex, "order.txt").read_bytes()
        assert stored[1024:1040] == b"PAY TO: mallory "
        assert stored != document.read_bytes()
        assert cksum(stored) == cksum(document.read_bytes())
