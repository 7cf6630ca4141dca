"""EFT-12: no forward secrecy; the private key lies in plaintext on the client's disk."""

from __future__ import annotations

import sqlite3

from tests.attacks.conftest import Attacks, Eavesdropped, expected


def test_every_recorded_session_decrypts_with_the_key_read_from_me_info(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    me_info = eavesdropped.client.path / "me.info"
    assert me_info.stat().st_mode & 0o077 == 0  # 0600 stops other users, not a thief

    result = attacks.run(
        "decrypt-recording", "--recording", eavesdropped.recording, "--me-info", me_info
    )

    assert result.succeeded is expected(
        "EFT-12 recorded sessions decrypt with a stolen key", version
    )
    if result.succeeded:
        files = result.result["files"]
        assert {f["file_name"] for f in files} == set(eavesdropped.files)
        assert len({f["connection"] for f in files}) == 2  # the registration and a reconnect
        report = next(f for f in files if f["file_name"] == "report.txt")
        assert report["plaintext"] == eavesdropped.files["report.txt"].decode()


def test_the_last_recorded_session_decrypts_with_the_key_the_server_keeps_on_disk(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    """The original design keeps ``clients.AESKey``; our server writes it as NULL."""
    database = eavesdropped.server.data_dir / "eft.sqlite3"

    result = attacks.run(
        "decrypt-recording", "--recording", eavesdropped.recording, "--server-db", database
    )

    assert result.succeeded is expected("EFT-18 session keys at rest on the server", version)
    if result.succeeded:
        # Only the last session's key is kept: the reconnect that sent report.txt.
        assert [f["file_name"] for f in result.result["files"]] == ["report.txt"]
    else:
        keys = sqlite3.connect(database).execute("SELECT AESKey FROM clients").fetchall()
        assert keys and all(key is None for (key,) in keys), "no AES key is kept on disk"
