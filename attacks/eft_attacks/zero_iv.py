"""The zero IV: equal file beginnings give equal ciphertext beginnings (passive).

Every file of a session is encrypted with the same key and the same all-zero IV, so
CBC is deterministic: two files whose first k blocks are equal have equal first k
ciphertext blocks, and the eavesdropper learns it (same template, same header, same
document in two versions, a file sent twice). A random IV per file would hide it.
Across sessions the key changes (a new one on every 826/827), so there it leaks nothing.

``--protocol 4``: each record is sealed with AES-GCM under a per-connection key and a
nonce that counts the records, so no two records share a keystream: we compare the
data part of every pair of uploads (same session or not) and find equal plaintexts
encrypted differently.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

from .common import Out
from .recording import load_sessions
from .v4 import PREFIX, add_protocol_argument, v4_views

FINDING = "EFT-10"
SUMMARY = "equal file beginnings encrypt identically within a session (zero IV)"
BLOCK = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")
    add_protocol_argument(parser)


def common_blocks(a: bytes, b: bytes) -> int:
    count = 0
    while count * BLOCK < min(len(a), len(b)):
        if a[count * BLOCK : (count + 1) * BLOCK] != b[count * BLOCK : (count + 1) * BLOCK]:
            break
        count += 1
    return count


def run_v4(args: argparse.Namespace, out: Out) -> bool:
    uploads = []
    for view in v4_views(load_sessions(Path(args.recording))):
        for number, upload in enumerate(view.uploads, 1):
            data = b"".join(c.frame.payload[PREFIX:-16] for c in upload.chunks)
            uploads.append((view.conn, number, data))
    findings = []
    for (conn_a, a, data_a), (conn_b, b, data_b) in combinations(uploads, 2):
        same = common_blocks(data_a, data_b)
        if same:
            findings.append(
                {"first": f"{conn_a}#{a}", "second": f"{conn_b}#{b}", "equal_leading_bytes": same}
            )
    compared = len(uploads) * (len(uploads) - 1) // 2
    out.step(f"compared {compared} pairs of uploads", equal=len(findings))
    return out.result(
        bool(findings),
        f"{len(findings)} of {compared} pairs of uploads share leading ciphertext blocks",
        pairs=findings,
        compared=compared,
        uploads=len(uploads),
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return run_v4(args, out)
    findings = []
    sessions = load_sessions(Path(args.recording))
    for view in sessions:
        attempts = [a for a in view.attempts if a.complete]
        for (i, a), (j, b) in combinations(enumerate(attempts, 1), 2):
            same = common_blocks(a.ciphertext, b.ciphertext)
            if not same:
                continue
            whole = a.ciphertext == b.ciphertext
            finding = {
                "connection": view.conn,
                "first": f"#{i} {a.file_name}",
                "second": f"#{j} {b.file_name}",
                "equal_leading_bytes": same * BLOCK,
                "identical": whole,
            }
            findings.append(finding)
            what = "are the same file" if whole else f"begin with the same {same * BLOCK} bytes"
            out.step(f"attempts {finding['first']!r} and {finding['second']!r} {what}")
    across = [
        (a, b)
        for v, w in combinations(sessions, 2)
        for a in v.attempts
        for b in w.attempts
        if common_blocks(a.ciphertext, b.ciphertext)
    ]
    out.step(f"pairs across sessions with equal leading blocks: {len(across)}")
    return out.result(
        bool(findings),
        f"{len(findings)} pair(s) of uploads are linked by their equal first blocks",
        pairs=findings,
    )
