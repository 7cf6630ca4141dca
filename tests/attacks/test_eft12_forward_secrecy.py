"""EFT-12: no forward secrecy; the private key lies in plaintext on the client's disk.

Version 4: the thief has the client's me4.info, the server's server.key and database,
and the recording of two sessions; the ephemeral Diffie-Hellman keeps them sealed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from eft_attacks.decrypt_recording import open_records, rebuild_handshake
from eft_attacks.framing import parse_frame
from eft_attacks.recording import SessionView
from eft_attacks.v4 import v4_view
from tests.attacks.conftest import Attacks, Eavesdropped, expected

VECTORS = Path(__file__).parents[1] / "v4" / "eft_v4_vectors.json"


def test_every_recorded_session_decrypts_with_the_key_read_from_me_info(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    me_info = eavesdropped.client.path / ("me4.info" if version == 4 else "me.info")
    assert me_info.stat().st_mode & 0o077 == 0  # 0600 stops other users, not a thief
    server_key = eavesdropped.server.data_dir / "server.key"
    v4_args = ("--server-key", server_key) if version == 4 else ()

    result = attacks.run(
        "decrypt-recording", "--recording", eavesdropped.recording, "--me-info", me_info, *v4_args
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
    if version == 4:
        assert result.result["secrets"] == ["client static key", "server static key"]
        assert result.result["sessions"] == 2
        # 2 stolen keys x 2 ephemeral public keys per session, none of them the real ee.
        assert result.result["ee_candidates"] == 8
        assert result.result["records_tried"] > 0 and result.result["records_opened"] == 0


def test_the_last_recorded_session_decrypts_with_the_key_the_server_keeps_on_disk(
    version: int, attacks: Attacks, eavesdropped: Eavesdropped
) -> None:
    """The original design keeps ``clients.AESKey``; our server writes it as NULL.

    Version 4 keeps no session key at all; the thief also takes server.key."""
    database = eavesdropped.server.data_dir / "eft.sqlite3"
    server_key = eavesdropped.server.data_dir / "server.key"
    v4_args = ("--server-key", server_key) if version == 4 else ()

    result = attacks.run(
        "decrypt-recording", "--recording", eavesdropped.recording, "--server-db", database,
        *v4_args,
    )  # fmt: skip

    assert result.succeeded is expected("EFT-18 session keys at rest on the server", version)
    if result.succeeded:
        # Only the last session's key is kept: the reconnect that sent report.txt.
        assert [f["file_name"] for f in result.result["files"]] == ["report.txt"]
    elif version == 3:
        keys = sqlite3.connect(database).execute("SELECT AESKey FROM clients").fetchall()
        assert keys and all(key is None for (key,) in keys), "no AES key is kept on disk"
    else:
        # Every 32-byte value at rest: the server's key, alice's public key, the
        # digests of her files. None is a record key, none gives the handshake's ee.
        secrets = result.result["secrets"]
        assert secrets[0] == "server static key"
        assert "clients_v4.StaticKey" in secrets and "files_v4.Digest" in secrets
        assert result.result["records_opened"] == 0 and not result.result["handshakes_rebuilt"]


def test_the_v4_attempt_opens_the_published_session_when_it_has_an_ephemeral_key() -> None:
    """A control for the version-4 result above: the same code that fails with stolen
    static keys decrypts the published test session given one ephemeral private key
    (and its records given the split keys), so its failure means something."""
    vectors = json.loads(VECTORS.read_text())
    events = []
    for t, frame in enumerate(vectors["frames"]):
        raw = bytes.fromhex(frame["hex"])
        events.append((float(t), parse_frame(raw, requests=frame["dir"] == "C->S")))
    view = v4_view(SessionView(1, events=events))
    keys = vectors["keys"]
    statics = [bytes.fromhex(keys["client_static_priv"]), bytes.fromhex(keys["server_static_priv"])]
    assert rebuild_handshake(view, statics) == (4, False)
    assert rebuild_handshake(view, [bytes.fromhex(keys["client_ephemeral_priv"])])[1] is True
    k1 = bytes.fromhex(vectors["k1"])
    tried, opened = open_records(view, [k1])
    assert tried == 7 and len(opened) == 3  # the client's three records, under k1
    assert opened[1].endswith(b"hello world\n")
