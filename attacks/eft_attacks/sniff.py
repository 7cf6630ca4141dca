"""What a passive eavesdropper reads from a recording without breaking any crypto.

Version 3 encrypts only file contents. User names (825/826/827), client ids (every
header, 1600), public keys (826), file names and exact sizes (every 828, 1603), the
number of attempts, the CRC of every file (1603) and the verdicts are all in the clear.

``--protocol 4``: names, keys, file names, contents and digests are sealed. What is
still in the clear: that a connection registers (825) or logs in (827), the client id
in every record header (one stable pseudonym that links all of a client's sessions),
the code and exact size of every record (so each file's exact size, and the length of
its name from the metadata record), the verdict codes, and all timing. Success here
means reading a user name or a file name.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from eft_protocol.codes import RequestCode

from .common import Out
from .recording import load_sessions
from .v4 import add_protocol_argument, v4_views

FINDING = "EFT-17"
SUMMARY = "list the metadata a passive eavesdropper reads in the clear"

_VERDICTS: dict[int | None, str] = {
    RequestCode.CRC_OK: "900 ok",
    RequestCode.CRC_RETRY: "901 retry",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")
    add_protocol_argument(parser)


def run_v4(args: argparse.Namespace, out: Out) -> bool:
    files = []
    client_ids: set[str] = set()
    intents = []
    for view in v4_views(load_sessions(Path(args.recording))):
        ids = [client_id.hex() for client_id in view.client_ids]
        client_ids.update(ids)
        intent = view.intent.code if view.intent else None
        intents.append(intent)
        first, last = view.events[0][0], view.events[-1][0]
        out.step(
            f"connection {view.conn}: intent {intent}, answer {view.welcome}",
            client_ids=ids,
            seconds=round(last - first, 3),
            records=len(view.requests) + len(view.responses),
        )
        for upload in view.uploads:
            verdict = upload.verdict.code if upload.verdict else None
            record = {
                "user": None,
                "file_name": None,
                "name_length": upload.name_length,
                "size": upload.data_bytes,
                "records": len(upload.chunks),
                "verdict": _VERDICTS.get(verdict, "902 gave up" if verdict else None),
                "client_id": upload.meta.frame.client_id,
            }
            files.append(record)
            out.step(f"  an upload of {upload.data_bytes} bytes", **record)
    return out.result(
        False,
        f"no user name and no file name is readable; still visible: {len(client_ids)} "
        f"client id(s), {len(files)} exact file size(s) and name length(s), intents, timing",
        users=[],
        files=files,
        client_ids=sorted(client_ids),
        intents=intents,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return run_v4(args, out)
    sessions = load_sessions(Path(args.recording))
    files = []
    for view in sessions:
        key = view.public_key
        out.step(
            f"connection {view.conn}: user {view.name!r}",
            client_id=view.client_id.hex() if view.client_id else None,
            public_key_sha256=hashlib.sha256(key).hexdigest()[:16] if key else None,
            key_exchanges=len(view.wrapped_keys),
        )
        for attempt in view.attempts:
            verdict = attempt.verdict.code if attempt.verdict else None
            record = {
                "user": view.name,
                "file_name": attempt.file_name,
                "size": attempt.orig_size,
                "packets": len(attempt.packets),
                "cksum": attempt.cksum,
                "verdict": _VERDICTS.get(verdict, "902 gave up" if verdict else None),
            }
            files.append(record)
            out.step(f"  file {attempt.file_name!r}: {attempt.orig_size} bytes", **record)
    names = sorted({view.name for view in sessions if view.name})
    return out.result(
        bool(names or files),
        f"read {len(names)} user name(s) and {len(files)} file name(s) with exact sizes",
        users=names,
        files=files,
    )
