"""EFT-17: names, ids, file names, exact sizes and CRCs travel in the clear.

Version 4 hides names and file names; sizes, the client id and timing remain."""

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
    if version == 4:
        # Hidden: the user and the file names. Still visible: one client id across both
        # sessions, register then log in, every file's exact size and name length.
        files = result.result["files"]
        assert result.result["users"] == [] and {f["file_name"] for f in files} == {None}
        assert result.result["client_ids"] == [eavesdropped.client.client_id_hex]
        assert result.result["intents"] == [825, 827]
        sizes = sorted((f["size"], f["name_length"]) for f in files)
        assert sizes == sorted((len(data), len(name)) for name, data in eavesdropped.files.items())
