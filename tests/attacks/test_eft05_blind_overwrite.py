"""EFT-05: a reconnect as the victim is enough to replace its files with junk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected, stored
from tests.support.processes import ClientDir, ServerProcess


def test_spoofed_reconnect_then_random_ciphertext_until_the_padding_is_valid(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    thesis = tmp_path / "thesis.txt"
    thesis.write_bytes(b"Chapter 1. Four years of work.\n" * 50)
    victim = victims("alice", server.address)
    assert victim.run([thesis]).returncode == 0

    result = attacks.run(
        "blind-overwrite",
        "--target",
        server.address,
        "--client-id",
        victim.client_id_hex,
        "--name",
        "alice",
        "--file",
        "thesis.txt",
    )

    assert result.succeeded is expected("EFT-05 blind overwrite after a spoofed reconnect", version)
    kept = stored(server, version, victim.client_id_hex, "thesis.txt").read_bytes()
    if result.succeeded:
        assert 1 <= len(kept) <= 15  # one random block, its valid padding stripped
    else:
        assert kept == thesis.read_bytes()
    if version == 4:
        assert result.result["welcome"] == 1606  # logging in as alice needs alice's key
        answers = result.result["answers"]
        assert answers["victim_id_in_header"] == answers["random_record"] == [-1] * 8
