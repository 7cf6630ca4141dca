"""EFT-17: names, ids, file names, exact sizes and CRCs travel in the clear."""

from __future__ import annotations

from tests.attacks.conftest import Attacks, Eavesdropped, expected


def test_an_eavesdropper_lists_users_file_names_and_sizes(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    result = attacks.run("sniff", "--recording", eavesdropped.recording)

    assert result.succeeded is expected("EFT-17 metadata in the clear", version)
    if result.succeeded:
        assert result.result["users"] == ["alice"]
        seen = {(f["file_name"], f["size"]) for f in result.result["files"]}
        assert seen == {(name, len(data)) for name, data in eavesdropped.files.items()}
