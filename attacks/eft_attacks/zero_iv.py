"""The zero IV: equal file beginnings give equal ciphertext beginnings (passive).

Every file of a session is encrypted with the same key and the same all-zero IV, so
CBC is deterministic: two files whose first k blocks are equal have equal first k
ciphertext blocks, and the eavesdropper learns it (same template, same header, same
document in two versions, a file sent twice). A random IV per file would hide it.
Across sessions the key changes (a new one on every 826/827), so there it leaks nothing.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

from .common import Out
from .recording import load_sessions

FINDING = "EFT-10"
SUMMARY = "equal file beginnings encrypt identically within a session (zero IV)"
BLOCK = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")


def common_blocks(a: bytes, b: bytes) -> int:
    count = 0
    while count * BLOCK < min(len(a), len(b)):
        if a[count * BLOCK : (count + 1) * BLOCK] != b[count * BLOCK : (count + 1) * BLOCK]:
            break
        count += 1
    return count


async def run(args: argparse.Namespace, out: Out) -> bool:
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
