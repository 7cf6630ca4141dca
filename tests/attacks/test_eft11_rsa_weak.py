"""EFT-11: RSA-1024 with e = 17, and no way to use a stronger key within version 3."""

from __future__ import annotations

from tests.attacks.conftest import Attacks, Eavesdropped, expected


def test_keys_are_rsa_1024_e17_and_the_server_refuses_a_stronger_one(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    result = attacks.run(
        "rsa-weak",
        "--recording",
        eavesdropped.recording,
        "--me-info",
        eavesdropped.client.path / "me.info",
        "--target",
        eavesdropped.server.address,
    )

    assert result.succeeded is expected("EFT-11 weak RSA parameters", version)
    if result.succeeded:
        assert {(k["bits"], k["e"]) for k in result.result["weak_keys"]} == {(1024, 17)}
        assert result.result["server_refuses_stronger_key"] is True
        assert result.result["shared_primes"] == 0
