"""EFT-08: the cksum in 1603 is sent in the clear and reveals low-entropy plaintext."""

from __future__ import annotations

from tests.attacks.conftest import PIN, Attacks, Eavesdropped, expected


def test_a_pin_is_read_from_the_recorded_crc_without_any_key(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    result = attacks.run(
        "crc-recover", "--recording", eavesdropped.recording, "--pattern", "PIN: ######\\n"
    )

    assert result.succeeded is expected("EFT-08 plaintext from the cksum", version)
    if result.succeeded:
        assert result.result["files"] == [{"file_name": "pin.txt", "plaintext": PIN.decode()}]
    if version == 4:
        # The size still shows which upload is the PIN (exactly one is 12 bytes), but the
        # BLAKE3 digest travels sealed: all 10^6 PINs fit the recording alike.
        assert [s["size"] for s in result.result["sized"]] == [len(PIN)]
        assert result.result["sealed"] == len(eavesdropped.files)
        assert result.result["candidates"] == 10**6
