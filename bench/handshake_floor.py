"""The least a Python server can spend on one version-4 handshake: issue 18's floor.

Issue 18 asks for at most 0.3 ms of server CPU per full version-4 handshake. To know
how much of the eft server's figure is its own work, the bench measures two throwaway
servers beside it, on the same event loop (uvloop), the same libraries and the same
machine, doing nothing but the handshake:

- ``loop``: accept, read a message of message 1's size, answer one of message 2's,
  read one of message 3's, answer one of the welcome's, close when the client does.
  What the event loop and the kernel's loopback cost, whatever the server computes.
- ``noise``: the same connections carrying the Noise XX responder of
  ``eft_protocol.noise``, the code the eft server runs (X25519 and AES-256-GCM from
  ``cryptography``, SHA-256 from ``hashlib``): message 1 read, message 2 made (a key
  generated, two DH), message 3 read (one DH), the transport keys split and the
  welcome sealed with them. No session state machine, no admission, no registry, no
  logs, no metrics: what is left cannot be cut without leaving Python or the curve.

The messages are framed by a 2-byte length, not by version 4's headers, so that the
floor's Python is as short as it can be.

Run as ``python -m bench.handshake_floor loop|noise``: it prints the port it listens
on (127.0.0.1, picked by the kernel) as one line and serves until stopped.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from typing import cast

import uvloop

from eft_protocol.noise import HandshakeState, KeyPair, NoiseError

from .common import CpuTimes, Usage, bench_env, peak_rss, python, stop_pid

KINDS = ("loop", "noise")
PROLOGUE = b"eft handshake floor"
#: The sizes the ``loop`` kind sends and expects: those of the ``noise`` kind's
#: messages (e; e, s and two tags; s and two tags; the welcome sealed).
SIZES = {"message 1": 32, "message 2": 96, "message 3": 64, "welcome": 32}
WELCOME = bytes(16)


def _frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class _Responder(asyncio.Protocol):
    """One connection: two messages in, two answers out (the welcome last)."""

    static: KeyPair | None = None  # the server's key, made once (the eft server's is on disk)
    noise = True

    def __init__(self) -> None:
        self.received = b""
        self.answered = 0
        self.handshake: HandshakeState | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        while len(self.received) >= 2:
            size = int.from_bytes(self.received[:2], "big")
            if len(self.received) < 2 + size:
                return
            message, self.received = self.received[2 : 2 + size], self.received[2 + size :]
            self._answer(message)

    def _answer(self, message: bytes) -> None:
        assert self.transport is not None
        first, self.answered = self.answered == 0, self.answered + 1
        if not self.noise:
            self.transport.write(_frame(bytes(SIZES["message 2" if first else "welcome"])))
            return
        if first:
            assert self.static is not None
            self.handshake = HandshakeState(initiator=False, static=self.static, prologue=PROLOGUE)
            self.handshake.read_message(message)
            self.transport.write(_frame(self.handshake.write_message()))
            return
        assert self.handshake is not None
        try:
            self.handshake.read_message(message)
        except NoiseError:  # as the eft server does: no answer to a message that fails
            self.transport.abort()
            return
        sending, _ = self.handshake.split()
        self.transport.write(_frame(sending.encrypt_with_ad(b"", WELCOME)))

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.close()
        return False


async def _serve(kind: str) -> None:
    _Responder.noise = kind == "noise"
    _Responder.static = KeyPair.generate()
    server = await asyncio.get_running_loop().create_server(_Responder, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@dataclass
class FloorServer:
    """A floor server started by its PID, its CPU read as the eft server's is."""

    kind: str
    port: int = 0
    static_public: bytes = b""
    proc: subprocess.Popen[bytes] | None = None
    _cpu_start: CpuTimes | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FloorServer:
        command = [python(), "-m", "bench.handshake_floor", self.kind]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=bench_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            stop_pid(self.proc)
            raise RuntimeError(f"the {self.kind} floor server did not start: {line!r}")
        self.port = int(line)
        return self

    def mark(self) -> None:
        assert self.proc is not None
        self._cpu_start = CpuTimes.of(self.proc.pid)

    def usage(self) -> Usage:
        assert self.proc is not None and self._cpu_start is not None, "start() and mark()"
        return Usage.between(self._cpu_start, CpuTimes.of(self.proc.pid), peak_rss(self.proc.pid))

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(size)


async def handshake(address: str, kind: str, key: KeyPair) -> None:
    """One connection to a floor server, as the bench's eft client makes one: both
    messages sent, both answers read and checked, then closed."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        state = HandshakeState(initiator=True, static=key, prologue=PROLOGUE)
        first = state.write_message() if kind == "noise" else bytes(SIZES["message 1"])
        writer.write(_frame(first))
        second = await _read_frame(reader)
        if kind == "noise":
            state.read_message(second)
            writer.write(_frame(state.write_message()))
        else:
            writer.write(_frame(bytes(SIZES["message 3"])))
        welcome = await _read_frame(reader)
        if kind == "noise":
            _, receiving = state.split()
            welcome = receiving.decrypt_with_ad(b"", welcome)
        if len(welcome) != (len(WELCOME) if kind == "noise" else SIZES["welcome"]):
            raise RuntimeError(f"the {kind} floor server's welcome is {len(welcome)} bytes")
        writer.write_eof()
        if await reader.read() != b"":
            raise RuntimeError(f"the {kind} floor server sent more than its welcome")
    finally:
        writer.close()
        await writer.wait_closed()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python -m bench.handshake_floor {'|'.join(KINDS)}", file=sys.stderr)
        return 2
    uvloop.run(_serve(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
