"""EFT-10: the zero IV makes equal file beginnings encrypt identically."""

from __future__ import annotations

from tests.attacks.conftest import Attacks, Eavesdropped, expected


def test_two_letters_from_one_template_are_linked_by_their_ciphertext(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    result = attacks.run("zero-iv", "--recording", eavesdropped.recording)

    assert result.succeeded is expected("EFT-10 equal beginnings encrypt equally", version)
    if result.succeeded:
        pairs = result.result["pairs"]
        letters = [p for p in pairs if "letter-a.txt" in p["first"] and "letter-b" in p["second"]]
        assert letters and letters[0]["equal_leading_bytes"] == 32  # the shared 38 bytes
        assert not [p for p in pairs if "pin.txt" in p["first"] + p["second"]]
        copies = [p for p in pairs if "letter-a.txt" in p["first"] and "copy" in p["second"]]
        assert copies and copies[0]["identical"] is True  # the same file, twice
    if version == 4:
        # Every pair, letter-a.txt and its byte-for-byte copy included: no equal block.
        assert result.result["uploads"] == len(eavesdropped.files)
        assert result.result["compared"] == 10 and result.result["pairs"] == []
