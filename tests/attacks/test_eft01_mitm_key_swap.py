"""EFT-01: no server authentication; a man in the middle reads the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, ServerProcess


def test_mitm_swaps_keys_and_reads_the_file_while_both_sides_report_success(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    mitm = attacks.start("mitm-key", "--target", server.address, "--out", tmp_path / "loot")
    secret = tmp_path / "salaries.csv"
    secret.write_bytes(b"name,salary\nalice,98000\nbob,87000\n" * 20)
    victim = victims("alice", mitm.address)

    run = victim.run([secret])
    result = mitm.finish()

    assert result.succeeded is expected("EFT-01 mitm key swap", version)
    if result.succeeded:
        assert (tmp_path / "loot" / "salaries.csv").read_bytes() == secret.read_bytes()
        # Transparent: the client verified its file and the server stored it intact.
        assert run.returncode == 0, run.stderr
        assert "file_verified" in run.kinds()
        stored = server.stored(victim.client_id_hex, "salaries.csv")
        assert stored.read_bytes() == secret.read_bytes()
