"""EFT-11: RSA-1024 with e = 17, and no way to use a stronger key within version 3.

Version 4: X25519 everywhere (the handshake's keys, me4.info, the server's key)."""

from __future__ import annotations

from tests.attacks.conftest import Attacks, Eavesdropped, expected


def test_keys_are_rsa_1024_e17_and_the_server_refuses_a_stronger_one(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    me_info = "me4.info" if version == 4 else "me.info"
    result = attacks.run(
        "rsa-weak",
        "--recording",
        eavesdropped.recording,
        "--me-info",
        eavesdropped.client.path / me_info,
        "--target",
        eavesdropped.server.address,
    )

    assert result.succeeded is expected("EFT-11 weak RSA parameters", version)
    if result.succeeded:
        assert {(k["bits"], k["e"]) for k in result.result["weak_keys"]} == {(1024, 17)}
        assert result.result["server_refuses_stronger_key"] is True
        assert result.result["shared_primes"] == 0
    if version == 4:
        keys = result.result["keys"]
        assert {k["type"] for k in keys} == {"X25519"}
        # Two ephemeral keys per recorded handshake, me4.info, the server's static key.
        assert len(keys) == 2 * 2 + 2
        assert result.result["rsa_offer_refused"] is True
