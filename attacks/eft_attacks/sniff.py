"""What a passive eavesdropper reads from a recording without breaking any crypto.

Version 3 encrypts only file contents. User names (825/826/827), client ids (every
header, 1600), public keys (826), file names and exact sizes (every 828, 1603), the
number of attempts, the CRC of every file (1603) and the verdicts are all in the clear.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from eft_protocol.codes import RequestCode

from .common import Out
from .recording import load_sessions

FINDING = "EFT-17"
SUMMARY = "list the metadata a passive eavesdropper reads in the clear"

_VERDICTS = {RequestCode.CRC_OK: "900 ok", RequestCode.CRC_RETRY: "901 retry"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")


async def run(args: argparse.Namespace, out: Out) -> bool:
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
